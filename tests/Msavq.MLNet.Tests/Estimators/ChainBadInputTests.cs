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
