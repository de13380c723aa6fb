using Microsoft.ML;
using Msavq.MLNet.Calibration;
using Msavq.MLNet.Data;
using Msavq.MLNet.Models;
using Msavq.MLNet.Sensitivity;
using Msavq.MLNet.Tests.Models;
using TorchSharp;
using static TorchSharp.torch;

namespace Msavq.MLNet.Tests.Estimators;

/// <summary>Bad input gets a clear exception before any work is lost (issue 4, deliverable 5).</summary>
[TestClass]
public sealed class ChainBadInputTests
{
    private static IEstimator<ITransformer> Chain(MLContext ml, IQuantizableModel model, double bits = 3.0) =>
        ml.Msavq().CollectCalibration(new CalibrationCollector.Options { Model = model, BatchSize = 8 })
            .Append(ml.Msavq().EstimateSensitivity(new SensitivityEstimator.Options { TargetBitsPerWeight = bits, WeightsPerCodebook = 256 }))
            .Append(ml.Msavq().QuantizeMixedPrecisionVq(new MixedPrecisionVqEstimator.Options { KMeansIterations = 5 }));

    [TestMethod]
    public void EmptyCalibrationData_IsAnError()
    {
        var ml = new MLContext(0);
        var e = Assert.ThrowsExactly<ArgumentException>(() => Chain(ml, TinyVlm.Create()).Fit(ShapesVqa.Generate(ml, 0, 1)));
        StringAssert.Contains(e.Message, "empty");
    }

    [TestMethod]
    public void MissingColumn_IsNamed_BeforeAnyWork()
    {
        var ml = new MLContext(0);
        var data = ml.Data.LoadFromEnumerable(new[] { new { Image = new byte[3072], Question = "what?" } });
        var e = Assert.ThrowsExactly<ArgumentOutOfRangeException>(() => Chain(ml, TinyVlm.Create()).Fit(data));
        StringAssert.Contains(e.Message, "'Answer'");
    }

    [TestMethod]
    public void MistypedColumn_SaysWhatWasExpected()
    {
        var ml = new MLContext(0);
        var data = ml.Data.LoadFromEnumerable(new[] { new { Image = new byte[3072], Question = 1f, Answer = "red" } });
        var e = Assert.ThrowsExactly<ArgumentOutOfRangeException>(() => Chain(ml, TinyVlm.Create()).Fit(data));
        StringAssert.Contains(e.Message, "'Question'");
        StringAssert.Contains(e.Message, "String");
    }

    [TestMethod]
    public void ImpossibleBudget_SaysTheCheapestCost()
    {
        var ml = new MLContext(0);
        foreach (var method in Enum.GetValues<QuantizationMethod>())
        {
            var e = Assert.ThrowsExactly<ArgumentException>(
                () => TinyChain.Fit(ml, method, 0.5), method.ToString());
            StringAssert.Contains(e.Message, $"No {method} configuration meets 0.5 bits/weight");
        }
    }

    [TestMethod]
    public void NonFiniteWeights_NameTheLayer()
    {
        var ml = new MLContext(0);
        var model = TinyVlm.Create();
        var layer = model.QuantizableLayers.First(l => l.Role == LayerRole.Language);
        using (no_grad()) layer.Module.weight[0, 0] = float.NaN;
        var e = Assert.ThrowsExactly<ArgumentException>(() => Chain(ml, model).Fit(TinyChain.Calibration(ml)));
        StringAssert.Contains(e.Message, layer.Name);
    }

    [TestMethod]
    public void LayerThatNeverFires_IsNamed()
    {
        var ml = new MLContext(0);
        var model = new ModelWithSilentLayer(TinyVlm.Create());
        var e = Assert.ThrowsExactly<InvalidOperationException>(() => Chain(ml, model).Fit(TinyChain.Calibration(ml)));
        StringAssert.Contains(e.Message, "never fired");
        StringAssert.Contains(e.Message, "extra.silent");
    }

    [TestMethod]
    public void EstimatorsOutOfOrder_SayWhatMustComeFirst()
    {
        var ml = new MLContext(0);
        var data = TinyChain.Calibration(ml);
        var e = Assert.ThrowsExactly<InvalidOperationException>(() => ml.Msavq().EstimateSensitivity().Fit(data));
        StringAssert.Contains(e.Message, "CollectCalibration");
        var collected = ml.Msavq().CollectCalibration(TinyVlm.Create()).Fit(data).Transform(data);
        e = Assert.ThrowsExactly<InvalidOperationException>(() => ml.Msavq().QuantizeMixedPrecisionVq().Fit(collected));
        StringAssert.Contains(e.Message, "EstimateSensitivity");
    }

    [TestMethod]
    public void UnknownLayerName_IsAnError()
    {
        var e = Assert.ThrowsExactly<ArgumentException>(() => new MLContext(0).Msavq().CollectCalibration(
            new CalibrationCollector.Options { Model = TinyVlm.Create(), LayerNames = new[] { "layers.9.nope" } }));
        StringAssert.Contains(e.Message, "'layers.9.nope'");
    }

    /// <summary>Calibration rows from the generator, with row 1 edited.</summary>
    private static IDataView WithRow1(MLContext ml, string? question = null, string? answer = null, bool nullQuestion = false)
    {
        var rows = new ShapesVqaGenerator(1).Take(3).Select(e => new QaRow { Image = e.Image, Question = e.Question, Answer = e.Answer }).ToList();
        if (question is not null || nullQuestion) rows[1].Question = question!;
        if (answer is not null) rows[1].Answer = answer;
        return ml.Data.LoadFromEnumerable(rows);
    }

    private sealed class QaRow
    {
        public byte[] Image { get; set; } = [];
        public string Question { get; set; } = "";
        public string Answer { get; set; } = "";
    }

    /// <summary>Counts calibration batches, to show a failure came before any.</summary>
    private sealed class Batches : IProgress<QuantizationProgress>
    {
        public int Count;
        public void Report(QuantizationProgress value) { if (value.Stage == "calibrate") Count++; }
    }

    [TestMethod]
    [DataRow("", false)]
    [DataRow("   ", false)]
    [DataRow(null, true)]
    public void EmptyQuestion_IsRejected_NamingTheRow(string? question, bool nullQuestion)
    {
        var ml = new MLContext(0);
        var e = Assert.ThrowsExactly<ArgumentException>(() => Chain(ml, TinyVlm.Create()).Fit(WithRow1(ml, question: question, nullQuestion: nullQuestion)));
        StringAssert.Contains(e.Message, "row 1");
        StringAssert.Contains(e.Message, "'Question'");
    }

    [TestMethod]
    [DataRow("   ")]
    [DataRow("zebra")]
    [DataRow("purple zebra")]
    public void AnswerOutsideTheVocabulary_OrBlank_IsRejected_NamingTheRow(string answer)
    {
        var ml = new MLContext(0);
        var batches = new Batches();
        var e = Assert.ThrowsExactly<ArgumentException>(() => ml.Msavq()
            .CollectCalibration(new CalibrationCollector.Options { Model = TinyVlm.Create(), BatchSize = 8, Progress = batches })
            .Fit(WithRow1(ml, answer: answer)));
        StringAssert.Contains(e.Message, "row 1");
        if (answer.Trim().Length > 0) StringAssert.Contains(e.Message, "vocabulary ('zebra')");
        Assert.AreEqual(0, batches.Count, "rejected before calibration");
    }

    [TestMethod]
    [DataRow(-1.0, 2)]
    [DataRow(0.0, 2)]
    [DataRow(double.NaN, 2)]
    [DataRow(double.PositiveInfinity, 2)]
    [DataRow(2.25, 3)]
    [DataRow(2.25, 0)]
    public void BadBudgetOrVectorDimension_FailsBeforeCalibration(double bits, int vectorDimension)
    {
        var ml = new MLContext(0);
        var options = new SensitivityEstimator.Options { TargetBitsPerWeight = 2.25, WeightsPerCodebook = 256 };
        var sensitivity = ml.Msavq().EstimateSensitivity(options);
        options.TargetBitsPerWeight = bits;             // set after construction: schema propagation still catches it
        options.VectorDimension = vectorDimension;
        var batches = new Batches();
        var chain = ml.Msavq().CollectCalibration(new CalibrationCollector.Options { Model = TinyVlm.Create(), BatchSize = 8, Progress = batches })
            .Append(sensitivity).Append(ml.Msavq().QuantizeMixedPrecisionVq());
        var e = Assert.ThrowsExactly<ArgumentOutOfRangeException>(() => chain.Fit(TinyChain.Calibration(ml)));
        StringAssert.Contains(e.Message, vectorDimension == 2 ? "TargetBitsPerWeight" : "VectorDimension");
        Assert.AreEqual(0, batches.Count, "no calibration batch ran");
        // And at construction, for options already bad then.
        Assert.ThrowsExactly<ArgumentOutOfRangeException>(() => ml.Msavq().EstimateSensitivity(bits, vectorDimension: vectorDimension));
    }

    /// <summary>A model that lists one Linear its forward pass never calls.</summary>
    private sealed class ModelWithSilentLayer(ShapesVlm inner) : IQuantizableModel
    {
        private readonly TorchSharp.Modules.Linear _silent = nn.Linear(inner.Config.TextWidth, inner.Config.TextWidth);
        public IReadOnlyList<QuantizableLayer> QuantizableLayers =>
            inner.QuantizableLayers.Append(new QuantizableLayer("extra.silent", 99, LayerRole.Language, _silent)).ToList();
        public Device Device => inner.Device;
        public ModelBatch Encode(IReadOnlyList<ModelRow> rows) => inner.Encode(rows);
        public Tensor Logits(ModelBatch batch) => ((IQuantizableModel)inner).Logits(batch);
        public IQuantizableModel Clone() => new ModelWithSilentLayer(inner.Clone());
    }
}
