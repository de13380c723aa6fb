using Msavq.MLNet.Calibration;
using Msavq.MLNet.Sensitivity;
using static TorchSharp.torch;

namespace Msavq.MLNet.Tests.Quantization;

/// <summary>MSAVQ's default codebook share grows with d, so a codebook costs the same share of the budget at every d.</summary>
[TestClass]
public sealed class CodebookShareTests
{
    [TestMethod]
    [DataRow(1, 256L)]
    [DataRow(2, 2048L)]
    [DataRow(4, 65536L)]
    public void DefaultShare_Is64dTimes4ToTheD(int d, long expected) => Assert.AreEqual(expected, Defaults.WeightsPerCodebookFor(d));

    /// <summary>
    /// At d = 4 and 2.25 b/w, a 128×512 layer is one 65,536-weight tile whose base codebook (K = 256, 2 index bits) fits
    /// the budget; with d = 2's 2,048-weight share it would be 32 tiles whose K = 256 codebooks cost 4 bits per weight each.
    /// </summary>
    [TestMethod]
    public void AtD4_TheDefaultTileHoldsACodebookOf2IndexBits()
    {
        using var scope = NewDisposeScope();
        var gen = new Generator(5);
        var w = randn(new long[] { 128, 512 }, generator: gen);
        var x = randn(new long[] { 1024, 512 }, generator: gen);
        using var stats = ModalityStatistics.FromMoments("x", x.t().matmul(x).div(1024).to(ScalarType.Float64), b: ones(128, dtype: ScalarType.Float64));
        var plan = new SensitivityEstimator.Options
        {
            Method = QuantizationMethod.Msavq, VectorDimension = 4, TargetBitsPerWeight = 2.25, ColumnsPerGroup = 512, MixedPrecision = false,
        };
        using var r = LayerQuantizer.QuantizeOne("x", w, stats, plan, new MixedPrecisionVqEstimator.Options { KMeansIterations = 3 });
        Assert.AreEqual(1, r.Report.Codebooks);
        Assert.AreEqual(2.0, r.Report.IndexBitsPerWeight, 1e-9, "K = 256 for 4-vectors");
        Assert.IsLessThanOrEqualTo(2.25 + 1e-9, r.Report.BitsPerWeight);
    }
}
