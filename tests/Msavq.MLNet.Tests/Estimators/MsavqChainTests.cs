using Microsoft.ML;
using Microsoft.ML.Data;
using Msavq.MLNet.Data;
using Msavq.MLNet.Models;

namespace Msavq.MLNet.Tests.Estimators;

/// <summary>The user's view of architecture.md §1, end to end on the shipped model and a small calibration set.</summary>
[TestClass]
public sealed class MsavqChainTests
{
    private sealed class Prediction
    {
        public string PredictedAnswer { get; set; } = "";
        public float Score { get; set; }
    }

    [TestMethod]
    public void ArchitectureExample_RunsEndToEnd_WithPredictionEngine()
    {
        var ml = new MLContext(seed: 0);
        var vlm = ShapesVlm.LoadPretrained();
        IDataView calib = ShapesVqa.Generate(ml, count: 64, seed: 1);
        IDataView testData = ShapesVqa.Generate(ml, ShapesVqaSplit.Test, 48);

        var pipeline = ml.Msavq()
            .CollectCalibration(vlm, imageColumn: "Image", textColumn: "Question", answerColumn: "Answer")
            .Append(ml.Msavq().EstimateSensitivity(targetBitsPerWeight: 2.0, vectorDimension: 2))
            .Append(ml.Msavq().QuantizeMixedPrecisionVq());

        TransformerChain<MixedPrecisionVqTransformer> quantizer = pipeline.Fit(calib);
        IDataView scored = quantizer.Transform(testData);
        var answers = scored.GetColumn<string>(MixedPrecisionVqTransformer.PredictedAnswerColumn).ToArray();
        var scores = scored.GetColumn<float>(MixedPrecisionVqTransformer.ScoreColumn).ToArray();
        var truth = testData.GetColumn<string>("Answer").ToArray();

        var q = quantizer.LastTransformer;
        var report = q.Report;
        Assert.AreEqual(vlm.QuantizableLayers.Count(l => l.Role == LayerRole.Language), (int)report.Rows.Count);
        Assert.IsTrue(q.BitsPerWeight <= 2.0 + 1e-12, $"all-in {q.BitsPerWeight} bits/weight");
        Assert.IsTrue(q.BitsPerWeight > 1.75, $"all-in {q.BitsPerWeight}: the budget should be nearly spent");
        Assert.AreEqual(48, answers.Length);
        Assert.IsTrue(scores.All(s => s > 0 && s <= 1), "scores are probabilities");
        // The 2-bit model answers as the FP model does (agreement is what quantization can break; chance is far lower).
        var examples = new ShapesVqaGenerator(ShapesVqa.SeedOf(ShapesVqaSplit.Test)).Take(48).ToList();
        var fpAnswers = VqaEvaluator.Evaluate(vlm, examples).Predictions;
        double agreement = answers.Zip(fpAnswers).Average(t => t.First == t.Second ? 1.0 : 0.0);
        Assert.IsGreaterThanOrEqualTo(0.97, agreement, $"agreement with FP {agreement:P1}");
        Assert.IsGreaterThan(0.9, answers.Zip(truth).Average(t => t.First == t.Second ? 1.0 : 0.0), "accuracy");

        // The FP model is untouched; the quantized copy differs from it.
        var fpWeight = vlm.QuantizableLayers.First(l => l.Role == LayerRole.Language).Module.weight;
        var qWeight = q.Model.QuantizableLayers.First(l => l.Role == LayerRole.Language).Module.weight;
        Assert.IsFalse(fpWeight.eq(qWeight).all().item<bool>());

        var engine = ml.Model.CreatePredictionEngine<ShapesVqaRow, Prediction>(quantizer);
        var rows = ShapesVqa.Rows(48, ShapesVqa.SeedOf(ShapesVqaSplit.Test)).ToList();
        for (int i = 0; i < 5; i++)
        {
            var p = engine.Predict(rows[i]);
            Assert.AreEqual(answers[i], p.PredictedAnswer);
            Assert.AreEqual(scores[i], p.Score, 1e-5f);
        }
    }

    [TestMethod]
    public void TransformIsLazy_AndValidatesColumns()
    {
        var ml = new MLContext(seed: 0);
        var quantizer = TinyChain.Fit(ml, QuantizationMethod.Rtn, 3.0);
        var wrong = ml.Data.LoadFromEnumerable(new[] { new { Image = new float[3], Question = "q" } });
        var e = Assert.ThrowsExactly<ArgumentOutOfRangeException>(() => quantizer.LastTransformer.Transform(wrong));
        StringAssert.Contains(e.Message, "'Image'");
        StringAssert.Contains(e.Message, "Byte");
    }
}
