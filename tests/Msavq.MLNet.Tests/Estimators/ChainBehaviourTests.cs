using Microsoft.ML;
using Msavq.MLNet.Calibration;
using Msavq.MLNet.Models;
using Msavq.MLNet.Sensitivity;
using Msavq.MLNet.Tests.Models;

namespace Msavq.MLNet.Tests.Estimators;

[TestClass]
public sealed class ChainBehaviourTests
{
    [TestMethod]
    public void SameSeed_GivesBitIdenticalWeights()
    {
        var ml = new MLContext(0);
        float[][] Weights(int seed) => TinyChain.Fit(ml, QuantizationMethod.Msavq, 2.25, TinyVlm.Create(7), seed: seed)
            .LastTransformer.Model.QuantizableLayers.Where(l => l.Role == LayerRole.Language)
            .Select(l => l.Module.weight.data<float>().ToArray()).ToArray();
        var a = Weights(1);
        var b = Weights(1);
        Assert.IsTrue(a.Zip(b).All(t => t.First.AsSpan().SequenceEqual(t.Second)), "same seed, same bits");
    }

    [TestMethod]
    public void EveryMethod_MeetsItsAllInBudget_AsPlanned()
    {
        var ml = new MLContext(0);
        foreach (var method in Enum.GetValues<QuantizationMethod>())
            // The tiny model's 32- and 48-column layers make scalar scales expensive: 2.75 is its "2-bit" budget.
            foreach (double budget in new[] { 2.75, 3.5 })
            {
                var q = TinyChain.Fit(ml, method, budget, mode: CalibrationMode.OneShot).LastTransformer;
                Assert.IsTrue(q.BitsPerWeight <= budget + 1e-12, $"{method} at {budget}: {q.BitsPerWeight}");
                Assert.IsTrue(q.Layers.All(l => l.Method == method.ToString()));
                Assert.IsTrue(q.Layers.All(l => l.ProxyError is >= 0 and < 1), $"{method}: proxy errors");
            }
    }

    [TestMethod]
    public void MsavqPlan_MixesTiers_AndIsInspectable()
    {
        var ml = new MLContext(0);
        var data = TinyChain.Calibration(ml);
        var collected = ml.Msavq().CollectCalibration(new CalibrationCollector.Options { Model = TinyVlm.Create(), BatchSize = 8 })
            .Fit(data).Transform(data);
        var sens = ml.Msavq().EstimateSensitivity(new SensitivityEstimator.Options { TargetBitsPerWeight = 2.25, WeightsPerCodebook = 256, ColumnsPerGroup = 16 })
            .Fit(collected);
        var plan = sens.Plan;
        var sizes = plan.Layers.SelectMany(l => l.TileCodebookSizes!).Distinct().ToList();
        Assert.IsTrue(sizes.Count >= 2, $"tiers used: {string.Join(",", sizes)}");
        Assert.IsTrue(plan.BitsPerWeight <= 2.25 + 1e-12);
        Assert.IsTrue(plan.BitsPerWeight > 2.0, $"the budget is nearly spent: {plan.BitsPerWeight}");
        Assert.IsTrue(plan.Layers.All(l => l.ColumnOrder is not null), "modality-affinity bins reorder columns");
        var frame = plan.ToDataFrame();
        Assert.AreEqual(plan.Layers.Sum(l => l.TileCodebookSizes!.Length), (int)frame.Rows.Count);

        var flat = ml.Msavq().EstimateSensitivity(new SensitivityEstimator.Options
        {
            TargetBitsPerWeight = 2.25, WeightsPerCodebook = 256, ColumnsPerGroup = 16, MixedPrecision = false, ModalityWeighting = false,
        }).Fit(collected).Plan;
        Assert.AreEqual(1, flat.Layers.SelectMany(l => l.TileCodebookSizes!).Distinct().Count());
        Assert.IsTrue(flat.Layers.All(l => l.ColumnOrder is null && l.VisionWeight == 1));
    }

    [TestMethod]
    public void Statistics_AreSplitByModality_AndTravelThroughTheChain()
    {
        var ml = new MLContext(0);
        var data = TinyChain.Calibration(ml);
        var model = TinyVlm.Create();
        var t = ml.Msavq().CollectCalibration(new CalibrationCollector.Options
        {
            Model = model, BatchSize = 8, Roles = new[] { LayerRole.Language, LayerRole.Projector },
        }).Fit(data);
        var r = t.Result;
        var lm = r.Layers.First(l => l.Role == LayerRole.Language).Name;
        var proj = r.Layers.First(l => l.Role == LayerRole.Projector).Name;
        int imageTokens = model.Config.ImageTokens * 24;
        Assert.AreEqual(imageTokens, r.Statistics[lm].ImageTokens);
        Assert.IsTrue(r.Statistics[lm].TextTokens > 24, "every row has question and answer tokens");
        Assert.AreEqual(imageTokens, r.Statistics[proj].ImageTokens);
        Assert.AreEqual(0, r.Statistics[proj].TextTokens);
        Assert.AreEqual(1.0, r.VisionWeights[proj]);
        // MBQ's floor: r_ℓ = max(raw ratio, median of the raw ratios).
        var raw = r.Layers.Where(l => l.Role == LayerRole.Language).Select(l => r.Statistics[l.Name].RawModalityRatio!.Value).ToList();
        double lowest = raw.Min();
        Assert.IsTrue(r.Layers.Where(l => l.Role == LayerRole.Language).All(l => r.VisionWeights[l.Name] >= lowest));
        Assert.IsTrue(raw.Count(x => r.VisionWeights.Values.Contains(x)) >= raw.Count / 2, "ratios above the median are kept");
        // G is non-zero, and the view the transformer returns carries the result on.
        Assert.IsTrue(r.Statistics[lm].Text.WeightGradient().abs().max().item<double>() > 0);
        var view = t.Transform(data);
        Assert.AreSame(r, ((ICarriesCalibration)view).Calibration);
        Assert.AreEqual(data.Schema.Count, view.Schema.Count);
    }

    [TestMethod]
    public void SequentialMode_RecollectsOnThePartlyQuantizedNetwork()
    {
        var ml = new MLContext(0);
        var seq = TinyChain.Fit(ml, QuantizationMethod.Gptq, 2.75, TinyVlm.Create(3), CalibrationMode.Sequential).LastTransformer;
        var one = TinyChain.Fit(ml, QuantizationMethod.Gptq, 2.75, TinyVlm.Create(3), CalibrationMode.OneShot).LastTransformer;
        var first = seq.Layers[0].Layer;
        var last = seq.Layers[^1].Layer;
        float[] W(MixedPrecisionVqTransformer t, string n) => t.Model.QuantizableLayers.First(l => l.Name == n).Module.weight.data<float>().ToArray();
        Assert.IsTrue(W(seq, first).AsSpan().SequenceEqual(W(one, first)), "the first block sees the same statistics");
        Assert.IsFalse(W(seq, last).AsSpan().SequenceEqual(W(one, last)), "later blocks see quantized inputs");
    }

    [TestMethod]
    public void GradientShift_ChangesTheResult_WhenSwitchedOn()
    {
        var ml = new MLContext(0);
        float[] W(bool shift) => TinyChain.Fit(ml, QuantizationMethod.Msavq, 2.75, TinyVlm.Create(5), CalibrationMode.OneShot,
                quantize: o => { o.GradientShift = shift; o.ShiftTrustRatio = 0.5; })
            .LastTransformer.Model.QuantizableLayers.First(l => l.Role == LayerRole.Language).Module.weight.data<float>().ToArray();
        Assert.IsFalse(W(true).AsSpan().SequenceEqual(W(false)));
    }

    [TestMethod]
    public void TrustScale_CapsTheStepAtTauTimesTheReferenceError()
    {
        TorchSharp.torch.manual_seed(3);
        var a = TorchSharp.torch.eye(8, dtype: TorchSharp.torch.ScalarType.Float64) * 2;
        var e = TorchSharp.torch.randn(4, 8, dtype: TorchSharp.torch.ScalarType.Float64);
        Assert.AreEqual(0.05 / 10, global::Msavq.MLNet.Quantization.GradientShift.TrustScale(e * 10, e, a, beta: 0.3, trustRatio: 0.05), 1e-12);
        Assert.AreEqual(0.3, global::Msavq.MLNet.Quantization.GradientShift.TrustScale(e * 0.01, e, a, beta: 0.3, trustRatio: 0.05), 1e-12);
    }

    [TestMethod]
    public void BitAllocator_SpendsOnSalientGroups_WithinBudget()
    {
        double[] tiers = { 1.5, 2, 2.5 };
        AllocationItem Item(double s) => new(s, tiers, tiers.Select(t => t * 100).ToArray());
        var items = new[] { Item(1), Item(100), Item(1), Item(10) };
        var chosen = BitAllocator.Allocate(items, 4 * 200);
        Assert.IsTrue(chosen.Select((t, i) => items[i].TierCostBits[t]).Sum() <= 800);
        Assert.AreEqual(2, chosen[1]);
        Assert.IsTrue(chosen[1] >= chosen[3] && chosen[3] >= chosen[0]);
        Assert.ThrowsExactly<ArgumentException>(() => BitAllocator.Allocate(items, 500));
    }
}
