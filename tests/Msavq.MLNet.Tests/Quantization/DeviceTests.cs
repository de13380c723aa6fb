using Microsoft.ML;
using Msavq.MLNet.Calibration;
using Msavq.MLNet.Models;
using Msavq.MLNet.Quantization;
using Msavq.MLNet.Sensitivity;
using Msavq.MLNet.Synthetic;
using Msavq.MLNet.Tests.Estimators;
using Msavq.MLNet.Tests.Models;
using TorchSharp;
using static TorchSharp.torch;

namespace Msavq.MLNet.Tests.Quantization;

/// <summary>
/// Issue 16.5: the engine creates its tensors on the device of the ones it is given, and the chain honours
/// <see cref="MLContext.GpuDeviceId"/> / <see cref="MLContext.FallbackToCpu"/> as README's Limitations say. Run here on
/// the CPU only (no GPU on this machine); where CUDA is available the same test also runs on cuda:0.
/// </summary>
[TestClass]
public sealed class DeviceTests
{
    private static IEnumerable<Device> Devices() =>
        cuda.is_available() ? new[] { CPU, new Device(DeviceType.CUDA, 0) } : new[] { CPU };

    [TestMethod]
    public void EveryReturnedTensor_IsOnTheInputsDevice()
    {
        foreach (var device in Devices())
        {
            using var scope = NewDisposeScope();
            var layer = SyntheticLayer.Create(32, 64, 512, 5);
            var w = layer.W.to(ScalarType.Float32).to(device);
            var (a, g, b) = (layer.A.to(device), layer.G.to(device), layer.B.to(device));
            var returned = new List<(string What, string Device)>();
            void Add(string what, params Tensor?[] ts) => returned.AddRange(ts.Where(t => t is not null).Select(t => (what, t!.device.ToString())));

            var (c, assign) = WeightedKMeans.Fit(w.reshape(-1, 2), null, 8, new KMeansOptions { Iterations = 5 });
            Add("k-means", c, assign);
            var (cp, ap) = WeightedKMeans.Fit(w.reshape(-1, 2), null, 8, new KMeansOptions { Iterations = 5, Init = CodebookInit.KMeansPlusPlus });
            Add("k-means++", cp, ap);
            var (cb, ab) = WeightedKMeans.FitBatched(w.reshape(4, -1, 2), w.reshape(4, -1, 2).abs(), 8, new KMeansOptions { Iterations = 5 });
            Add("k-means, batched", cb, ab);
            var gptq = Gptq.Quantize(w, a, new GptqOptions { Bits = 3, GroupSize = 16, ActOrder = true });
            Add("GPTQ", gptq.Codes, gptq.Scales, gptq.Zeros, gptq.Dequantize());
            var rtn = RoundToNearest.Quantize(w, 3, 16);
            Add("RTN", rtn.Codes, rtn.Scales, rtn.Zeros, rtn.Dequantize(), RoundToNearest.DequantizePlainMinMax(w, 2, 16));
            var gptvq = Gptvq.Quantize(w, a, new GptvqOptions { ColumnsPerGroup = 32, WeightsPerCodebook = 512, KMeans = new KMeansOptions { Iterations = 5 } });
            Add("GPTVQ", gptvq.Codebooks.Append(gptvq.Indices).Append(gptvq.Dequantize()).ToArray());
            foreach (var (forward, euclidean) in new[] { (false, false), (true, true) })
            {
                var ldlq = BlockLdlq.Quantize(w, a, b.to(ScalarType.Float32), new BlockLdlqOptions
                {
                    Layout = new VqLayout(2, 8, 32), Forward = forward, EuclideanAssignment = euclidean,
                    TileCodebookSizes = Enumerable.Range(0, 8).Select(i => i % 2 == 0 ? 16 : 8).ToArray(),
                    KMeans = new KMeansOptions { Iterations = 5 },
                });
                Add($"BlockLDLQ forward={forward}", ldlq.Codebooks.Append(ldlq.Indices).Append(ldlq.Dequantize()).ToArray());
            }
            var cholesky = HessianFactor.Cholesky(a, 0.01).Lower;
            var ldl = BlockLdl.FromCholesky(cholesky, 2);
            Add("factors", cholesky, HessianFactor.UpperInverseCholesky(cholesky), ldl.L, ldl.D, ldl.DenseD(), HessianFactor.Damp(a, 0.01),
                HessianFactor.FloorOutputFactor(b), GradientShift.OneSided(w, g, a, b, new GradientShiftOptions()),
                Salience.Elements(w, HessianFactor.Damp(a, 0.01), b, g, LocalSalience.Obs));
            using var stats = ModalityStatistics.FromMoments("x", a, g, b);
            var combined = stats.Combine(1.0);
            Add("statistics", combined.A, combined.B, combined.G, combined.CurvatureA, combined.CurvatureB);
            using var msavq = MsavqLayer.Quantize(w, combined,
                new MsavqLayerPlan(new VqLayout(2, 16, 32), new[] { 16, 8, 16, 8 }, Enumerable.Range(0, 64).Select(j => (long)(63 - j)).ToArray(),
                    RowScales: true, TrialBits: 2),
                new MsavqLayerOptions { GradientShift = true, KMeans = new KMeansOptions { Iterations = 5 } });
            Add("MSAVQ layer", msavq.Weight.Codebooks.Append(msavq.Weight.Indices).Append(msavq.RowScales).ToArray());
            foreach (var method in Enum.GetValues<QuantizationMethod>())
            {
                using var r = LayerQuantizer.QuantizeOne("x", w, stats,
                    new SensitivityEstimator.Options { Method = method, TargetBitsPerWeight = 3.5, WeightsPerCodebook = 256, ColumnsPerGroup = 32 },
                    new MixedPrecisionVqEstimator.Options { KMeansIterations = 5 });
                Add($"layer step, {method}", r.Weight);
            }

            var elsewhere = returned.Where(r => r.Device != device.ToString()).Select(r => $"{r.What} on {r.Device}").ToList();
            Assert.IsEmpty(elsewhere, $"input on {device}: " + string.Join(", ", elsewhere));
            Assert.IsGreaterThan(40, returned.Count);
        }
    }

    [TestMethod]
    public void ContextRequest_IsACheckAgainstTheModelsDevice()
    {
        var cpu = CPU;
        var cuda0 = new Device(DeviceType.CUDA, 0);
        var cuda1 = new Device(DeviceType.CUDA, 1);
        // No request: wherever the model is.
        ContextDevice.Check(null, false, cudaAvailable: false, cpu);
        ContextDevice.Check(null, false, cudaAvailable: true, cuda1);
        // A GPU asked for and present: the model must be on it; nothing is moved.
        ContextDevice.Check(0, false, cudaAvailable: true, cuda0);
        StringAssert.Contains(Assert.ThrowsExactly<InvalidOperationException>(() => ContextDevice.Check(0, true, true, cpu)).Message,
            "GpuDeviceId is 0 but the model is on cpu");
        StringAssert.Contains(Assert.ThrowsExactly<InvalidOperationException>(() => ContextDevice.Check(0, true, true, cuda1)).Message,
            "the model is on cuda:1");
        // No CUDA: the CPU with FallbackToCpu, else a clear error.
        ContextDevice.Check(0, fallbackToCpu: true, cudaAvailable: false, cpu);
        StringAssert.Contains(Assert.ThrowsExactly<InvalidOperationException>(() => ContextDevice.Check(0, false, false, cpu)).Message,
            "CUDA is not available");
    }

    [TestMethod]
    public void Chain_HonoursGpuDeviceIdAndFallbackToCpu()
    {
        var model = TinyVlm.Create(2);
        var data = TinyChain.Calibration(new MLContext(0), rows: 8);
        var options = new CalibrationCollector.Options { Model = model, BatchSize = 8, Roles = new[] { LayerRole.Projector } };
        var strict = new MLContext(0) { GpuDeviceId = 0, FallbackToCpu = false };
        // Here there is no CUDA (and were there one, this model is on the CPU): both fail before any work, saying why.
        var e = Assert.ThrowsExactly<InvalidOperationException>(() => strict.Msavq().CollectCalibration(options).Fit(data));
        StringAssert.Contains(e.Message, "MLContext.GpuDeviceId is 0");
        if (cuda.is_available()) return;
        StringAssert.Contains(e.Message, "FallbackToCpu is false");

        var lenient = new MLContext(0) { GpuDeviceId = 0, FallbackToCpu = true };
        using var calibrated = lenient.Msavq().CollectCalibration(options).Fit(data);
        Assert.IsTrue(calibrated.Result.Statistics.Values.All(s => s.Image.Device.ToString() == "cpu"), "fell back to the CPU");
        // The quantizer checks its own context too (a collector made without one checks nothing).
        var carried = lenient.Msavq().EstimateSensitivity(new SensitivityEstimator.Options { TargetBitsPerWeight = 3.5, WeightsPerCodebook = 256 })
            .Fit(calibrated.Transform(data)).Transform(calibrated.Transform(data));
        Assert.ThrowsExactly<InvalidOperationException>(() => strict.Msavq().QuantizeMixedPrecisionVq().Fit(carried));
    }
}
