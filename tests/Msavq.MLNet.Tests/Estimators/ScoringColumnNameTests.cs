using Microsoft.ML;
using Microsoft.ML.Data;
using Msavq.MLNet.Format;
using Msavq.MLNet.Tests.Models;

namespace Msavq.MLNet.Tests.Estimators;

/// <summary>The VQA scoring reads columns of any name (the schema definition once looked the image column up after renaming it).</summary>
[TestClass]
public sealed class ScoringColumnNameTests
{
    [TestMethod]
    public void VqaScoring_ReadsRenamedImageAndQuestionColumns()
    {
        var ml = new MLContext(0);
        var model = TinyVlm.Create();
        var data = ml.Transforms.CopyColumns("Picture", "Image").Append(ml.Transforms.CopyColumns("Ask", "Question"))
            .Fit(TinyChain.Calibration(ml, 3)).Transform(TinyChain.Calibration(ml, 3));
        using var scorer = new MixedPrecisionVqTransformer(ml, model, [], new QuantizedModel("Rtn", new Dictionary<string, string>(), []),
                                                           data.Schema, "Picture", "Ask");
        var answers = scorer.Transform(data).GetColumn<string>(MixedPrecisionVqTransformer.PredictedAnswerColumn).ToList();
        Assert.HasCount(3, answers);
        Assert.IsTrue(answers.All(a => a.Length > 0));
    }
}
