using Msavq.MLNet.Calibration;
using Msavq.MLNet.Sensitivity;
using static TorchSharp.torch;

namespace Msavq.MLNet.Tests.Quantization;

/// <summary>The output factor's floor, b ← max(b, ε·mean(b)) (algorithm.md §8.2), reaches the allocation and the layer step.</summary>
[TestClass]
public sealed class OutputFactorFloorTests
{
    private static float[] Dequantized(Tensor w, Tensor a, Tensor b, double floor)
    {
        using var stats = ModalityStatistics.FromMoments("x", a, b: b);
        using var r = LayerQuantizer.QuantizeOne("x", w, stats,
            new SensitivityEstimator.Options
            {
                Method = QuantizationMethod.Msavq, TargetBitsPerWeight = 2.5, WeightsPerCodebook = 256, ColumnsPerGroup = 32, OutputFactorFloor = floor,
            },
            new MixedPrecisionVqEstimator.Options { KMeansIterations = 5 });
        return r.Weight.contiguous().data<float>().ToArray();
    }

    [TestMethod]
    public void ALargeFloor_WeighsEveryRowAlike_TheDefaultDoesNot()
    {
        using var scope = NewDisposeScope();
        var gen = new Generator(3);
        var w = randn(new long[] { 16, 64 }, generator: gen);
        var x = randn(new long[] { 256, 64 }, generator: gen);
        var a = x.t().matmul(x).div(256).to(ScalarType.Float64);
        // Rows whose loss curvature spans six orders of magnitude, and rows that carry none.
        var b = pow(10.0, linspace(-4, 2, 16, dtype: ScalarType.Float64)).index_put_(tensor(0.0, ScalarType.Float64), tensor(new long[] { 0, 5 }));
        var uniform = ones(16, dtype: ScalarType.Float64);
        CollectionAssert.AreEqual(Dequantized(w, a, uniform, 1e12), Dequantized(w, a, b, 1e12), "ε huge: b is ε·mean(b) on every row, as uniform b");
        CollectionAssert.AreNotEqual(Dequantized(w, a, uniform, Defaults.OutputFactorFloor), Dequantized(w, a, b, Defaults.OutputFactorFloor),
            "ε = 1e-3: rows weigh by their curvature");
    }
}
