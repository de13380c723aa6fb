using Msavq.MLNet.Quantization;
using static TorchSharp.torch;

namespace Msavq.MLNet.Tests.Quantization;

[TestClass]
public sealed class GptqTests
{
    private static double[,] ToArray(Tensor t)
    {
        var data = t.to(ScalarType.Float64).data<double>().ToArray();
        int m = (int)t.shape[0], n = (int)t.shape[1];
        var a = new double[m, n];
        for (int i = 0; i < m; i++) for (int j = 0; j < n; j++) a[i, j] = data[i * n + j];
        return a;
    }

    [TestMethod]
    [DataRow(4, -1, false, false, DisplayName = "4-bit per channel")]
    [DataRow(2, 16, false, false, DisplayName = "2-bit g16")]
    [DataRow(3, 16, true, false, DisplayName = "3-bit g16 act-order")]
    [DataRow(2, 16, true, true, DisplayName = "2-bit g16 act-order static groups")]
    [DataRow(3, -1, true, false, DisplayName = "3-bit act-order per channel")]
    public void Gptq_GivesTheReferenceCodes(int bits, int groupSize, bool actOrder, bool staticGroups)
    {
        var g = Mat.Rng(42);
        int m = 24, n = 64;
        var h = Mat.CorrelatedHessian(n, 400, g);
        h[5, 5] = 0; h[5, ..] = 0; h[.., 5] = 0;                          // a dead input
        var w = Mat.Randn(m, n, g);
        var o = new GptqOptions { Bits = bits, GroupSize = groupSize, ActOrder = actOrder, StaticGroups = staticGroups, BlockSize = 16 };
        using var q = Gptq.Quantize(w, h, o);
        var expected = GptqReference.Codes(ToArray(w), ToArray(h), bits, 16, 0.01, groupSize, actOrder, staticGroups);
        var actual = ToArray(q.Codes);
        int differ = 0;
        for (int i = 0; i < m; i++) for (int j = 0; j < n; j++) if (actual[i, j] != expected[i, j]) differ++;
        Assert.AreEqual(0, differ, $"{differ} of {m * n} codes differ from the reference");
        Assert.IsTrue(q.Dequantize()[.., 5].abs().max().item<double>() <= q.Scales.abs().max().item<double>() * (1 << bits),
            "dead column stays finite");
    }

    [TestMethod]
    public void Gptq_BeatsRoundToNearestOnTheProxy()
    {
        var g = Mat.Rng(7);
        var h = Mat.CorrelatedHessian(128, 1000, g);
        var w = Mat.Randn(64, 128, g);
        using var rtn = RoundToNearest.Quantize(w, 3, 32);
        using var gptq = Gptq.Quantize(w, h, new GptqOptions { Bits = 3, GroupSize = 32 });
        double eRtn = HessianFactor.RelativeProxyError(w, rtn.Dequantize(), h);
        double eGptq = HessianFactor.RelativeProxyError(w, gptq.Dequantize(), h);
        Assert.IsLessThan(eRtn, eGptq, $"GPTQ {eGptq:g3} vs RTN {eRtn:g3}");
    }

    [TestMethod]
    public void RoundToNearest_StaysWithinHalfAStep()
    {
        var g = Mat.Rng(8);
        var w = Mat.Randn(16, 64, g);
        using var q = RoundToNearest.Quantize(w, 2, 16);
        Assert.AreEqual(0.0, q.Codes.min().item<double>());
        Assert.AreEqual(3.0, q.Codes.max().item<double>());
        var err = (q.Dequantize() - w).abs();
        var step = q.Scales.index_select(1, tensor(q.GroupOfColumn.Select(x => (long)x).ToArray()));
        Assert.IsTrue(err.le(step * 0.5 + 1e-12).all().item<bool>());
    }

    [TestMethod]
    public void BitCost_CountsScalesZerosAndPermutation()
    {
        var g = Mat.Rng(9);
        var w = Mat.Randn(8, 128, g);
        var h = Mat.CorrelatedHessian(128, 300, g);
        using var q = Gptq.Quantize(w, h, new GptqOptions { Bits = 2, GroupSize = 64, ActOrder = true });
        var cost = q.Cost();
        Assert.AreEqual(8 * 128 * 2.0, cost.IndexBits);
        Assert.AreEqual(8 * 2 * (16 + 2.0), cost.ScaleBits);
        Assert.AreEqual(128 * 7.0, cost.PermutationBits);
        Assert.AreEqual(2 + (8 * 2 * 18.0 + 128 * 7) / (8 * 128), cost.BitsPerWeight, 1e-12);

        // Static groups keep each group's columns in place: the sweep order is not stored, so it costs nothing.
        using var s = Gptq.Quantize(w, h, new GptqOptions { Bits = 2, GroupSize = 64, ActOrder = true, StaticGroups = true });
        Assert.AreEqual(0.0, s.Cost().PermutationBits);
    }
}
