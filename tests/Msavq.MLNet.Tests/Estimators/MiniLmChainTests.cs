using Microsoft.ML;
using Msavq.MLNet.Calibration;
using Msavq.MLNet.Data;
using Msavq.MLNet.Models.MiniLm;
using Msavq.MLNet.Tests.Models;
using static TorchSharp.torch;

namespace Msavq.MLNet.Tests.Estimators;

[TestClass]
public sealed class MiniLmChainTests
{
    [TestMethod]
    public void Chain_QuantizesATextOnlyEncoder_WithTextStatisticsOnly_AndNoPermutation()
    {
        var ml = new MLContext(seed: 0);
        var model = SharedMiniLm.Model;
        var block0 = model.QuantizableLayers.Where(l => l.Block == 0).Select(l => l.Name).ToArray();
        IDataView pairs = BrownCorpus.CalibrationPairs(ml, sentences: 16);
        // One EstimatorChain, as a user writes it: schema propagation must not ask for image or question columns.
        var chain = ml.Msavq().CollectCalibration(new CalibrationCollector.Options
            {
                Model = model, ImageColumnName = null, TextColumnName = BrownCorpus.TextColumn, AnswerColumnName = BrownCorpus.NextColumn,
                LayerNames = block0, BatchSize = 8,
                ReleaseAfterQuantization = false,   // kept, to look at them below (a chain frees them by default)
            })
            .Append(ml.Msavq().EstimateSensitivity(targetBitsPerWeight: 3.0))
            .Append(ml.Msavq().QuantizeMixedPrecisionVq(new MixedPrecisionVqEstimator.Options { KMeansIterations = 10, ScoreRows = false }))
            .Fit(pairs);
        var calibration = chain.OfType<CalibrationTransformer>().Single();
        var plan = chain.OfType<Sensitivity.SensitivityTransformer>().Single();
        var quantizer = chain.LastTransformer;

        foreach (var s in calibration.Result.Statistics.Values)
        {
            Assert.AreEqual(0.0, s.ImageTokens, $"{s.Layer}: a text encoder has no image tokens");
            Assert.IsGreaterThan(0.0, s.TextTokens);
            Assert.IsGreaterThan(0.0, s.Text.WeightGradient().abs().max().item<double>(), $"{s.Layer}: the contrastive loss gives G ≠ 0");
        }
        calibration.Dispose();
        Assert.IsTrue(plan.Plan.Layers.All(l => l.ColumnOrder is null), "one modality: no affinity permutation to pay for");
        Assert.IsLessThanOrEqualTo(3.0 + 1e-9, quantizer.BitsPerWeight);
        Assert.AreSame(pairs.Schema, quantizer.GetOutputSchema(pairs.Schema), "a sentence encoder's transformer passes rows through");
        Assert.AreEqual(pairs.Schema.Count, chain.Transform(pairs).Schema.Count);

        using var quantized = (MiniLmEncoder)quantizer.Model;
        using var scope = NewDisposeScope();
        using var _ = no_grad();
        var sentences = BrownCorpus.Evaluation.Take(8).ToList();
        Assert.IsFalse(quantized.QuantizableLayers[0].Module.weight.eq(model.QuantizableLayers[0].Module.weight).all().item<bool>());
        Assert.IsTrue(quantized.QuantizableLayers[6].Module.weight.eq(model.QuantizableLayers[6].Module.weight).all().item<bool>(),
            "layers outside the plan stay as they were");
        double cosine = (quantized.Embed(sentences) * model.Embed(sentences)).sum(1).min().item<float>();
        Assert.IsGreaterThan(0.9, cosine, "one block at 3 bits keeps the embeddings close");
    }

    [TestMethod]
    public void Quantize_WithRowScoringOn_RejectsAModelThatDoesNotAnswerQuestions()
    {
        var ml = new MLContext(seed: 0);
        var model = SharedMiniLm.Model;
        IDataView pairs = BrownCorpus.CalibrationPairs(ml, sentences: 4);
        var calibrated = ml.Msavq().CollectCalibration(new CalibrationCollector.Options
        {
            Model = model, ImageColumnName = null, TextColumnName = BrownCorpus.TextColumn, AnswerColumnName = BrownCorpus.NextColumn,
            LayerNames = new[] { model.QuantizableLayers[0].Name }, BatchSize = 4,
        }).Fit(pairs).Transform(pairs);
        var planned = ml.Msavq().EstimateSensitivity(targetBitsPerWeight: 3.0).Fit(calibrated).Transform(calibrated);
        var e = Assert.ThrowsExactly<InvalidOperationException>(() => ml.Msavq().QuantizeMixedPrecisionVq().Fit(planned));
        StringAssert.Contains(e.Message, "ScoreRows = false");
    }
}
