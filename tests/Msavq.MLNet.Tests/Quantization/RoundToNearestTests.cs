using Msavq.MLNet.Quantization;
using static TorchSharp.torch;

namespace Msavq.MLNet.Tests.Quantization;

[TestClass]
public sealed class RoundToNearestTests
{
    [TestMethod]
    public void PlainMinMax_RoundsEachWeightToTheNearestOfItsGroupsLevels()
    {
        var g = new Random(5);
        int m = 6, n = 160, group = 64; // a short last group (32 columns)
        var data = Enumerable.Range(0, m * n).Select(_ => (float)(g.NextDouble() * 4 - 1.5)).ToArray();
        using var w = tensor(data, new long[] { m, n });
        using var q = RoundToNearest.DequantizePlainMinMax(w, 2, group);
        var got = q.data<float>().ToArray();
        for (int i = 0; i < m; i++)
            for (int c0 = 0; c0 < n; c0 += group)
            {
                var idx = Enumerable.Range(c0, Math.Min(group, n - c0)).Select(j => i * n + j).ToArray();
                float lo = idx.Min(k => data[k]), hi = idx.Max(k => data[k]);
                double scale = (double)(Half)((hi - lo) / 3), offset = (double)(Half)lo;
                var levels = Enumerable.Range(0, 4).Select(k => offset + k * scale).ToArray();
                foreach (int k in idx)
                {
                    double nearest = levels.MinBy(l => Math.Abs(l - data[k]));
                    Assert.AreEqual(nearest, got[k], 1e-6, $"row {i}, column {k % n}");
                }
            }
    }

    [TestMethod]
    public void PlainMinMax_HasNoZeroLevel_TheZeroPointGridHasOne()
    {
        // A symmetric group: plain levels are ±1/3 and ±1, so 0 moves by 1/3; the zero-point grid keeps 0 exact.
        using var w = tensor(new float[] { -1f, 0f, 0f, 0f, 0.2f, -0.2f, 0f, 1f }, new long[] { 1, 8 });
        using var plain = RoundToNearest.DequantizePlainMinMax(w, 2, 8);
        Assert.AreEqual(1 / 3.0, Math.Abs(plain[0, 1].item<float>()), 1e-3);
        using var zp = RoundToNearest.Quantize(w, 2, 8);
        using var zpHat = zp.Dequantize();
        Assert.AreEqual(0f, zpHat[0, 1].item<float>());
    }

    [TestMethod]
    public void PlainMinMax_KeepsAConstantGroupExactly_AndRejectsBadArguments()
    {
        using var w = full(2, 64, 0.375f);
        using var q = RoundToNearest.DequantizePlainMinMax(w, 2, 64);
        Assert.AreEqual(0.0, (q - w).abs().max().item<float>());
        Assert.ThrowsExactly<ArgumentOutOfRangeException>(() => RoundToNearest.DequantizePlainMinMax(w, 0, 64));
        Assert.ThrowsExactly<ArgumentOutOfRangeException>(() => RoundToNearest.DequantizePlainMinMax(w, 2, 0));
    }
}
