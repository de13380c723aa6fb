using Msavq.MLNet.Quantization;
using static TorchSharp.torch;

namespace Msavq.MLNet.Tests.Quantization;

[TestClass]
public sealed class VectorQuantizationTests
{
    [TestMethod]
    public void KMeans_RecoversSeparatedClusters_WithWeightedMeans()
    {
        var g = Mat.Rng(1);
        var centers = tensor(new double[] { -5, -5, 5, 5, -5, 5, 5, -5 }).reshape(4, 2);
        var labels = randint(0, 4, new long[] { 400 }, generator: g);
        var z = centers.index_select(0, labels) + 0.1 * randn(400, 2, ScalarType.Float64, generator: g);
        var (c, a) = WeightedKMeans.Fit(z, null, 4, new KMeansOptions());
        var sorted = c.index_select(0, (c[.., 0] * 100 + c[.., 1]).argsort());
        var expected = centers.index_select(0, (centers[.., 0] * 100 + centers[.., 1]).argsort());
        Mat.AssertClose(sorted, expected, 0.05, "centroids");
        // Each centroid is the weighted mean of its members.
        var w = rand(400, 2, ScalarType.Float64, generator: g) + 0.5;
        var (cw, aw) = WeightedKMeans.Fit(z, w, 4, new KMeansOptions());
        for (int k = 0; k < 4; k++)
        {
            var mask = aw.eq(k).unsqueeze(1);
            var mean = (w * z * mask).sum(dim: 0) / (w * mask).sum(dim: 0);
            Mat.AssertClose(cw[k], mean, 1e-9, $"centroid {k}");
        }
    }

    [TestMethod]
    public void KMeans_MoreCodewordsThanDistinctPoints_LeavesNoZeroCodeword()
    {
        var z = tensor(new double[] { 3, 3, 3, 3, 4, 4, 4, 4, 5, 5 }).reshape(5, 2);
        var (c, _) = WeightedKMeans.Fit(z, null, 8, new KMeansOptions { Iterations = 10 });
        Assert.IsFalse(c.abs().sum(1).eq(0).any().item<bool>(), "an empty cluster was left at the zero vector");
    }

    [TestMethod]
    public void KMeans_ChunkedDistancesMatchOneChunk()
    {
        var g = Mat.Rng(2);
        var z = randn(300, 4, ScalarType.Float64, generator: g);
        var (c1, a1) = WeightedKMeans.Fit(z, null, 16, new KMeansOptions { ChunkElements = 1 << 20 });
        var (c2, a2) = WeightedKMeans.Fit(z, null, 16, new KMeansOptions { ChunkElements = 16 * 7 });
        Assert.IsTrue(a1.eq(a2).all().item<bool>());
        Mat.AssertClose(c1, c2, 1e-12, "centroids");
    }

    [TestMethod]
    public void KMeans_BatchedFitsEqualSeparateFits()
    {
        var g = Mat.Rng(4);
        var z = randn(3, 200, 2, ScalarType.Float64, generator: g);
        var w = rand(3, 200, 2, ScalarType.Float64, generator: g) + 0.1;
        var o = new KMeansOptions { Iterations = 30 };
        var (cb, ab) = WeightedKMeans.FitBatched(z, w, 8, o);
        for (int i = 0; i < 3; i++)
        {
            var (c, a) = WeightedKMeans.Fit(z[i], w[i], 8, o);
            Mat.AssertClose(cb[i], c, 1e-10, $"codebook {i}");
            Assert.IsTrue(ab[i].eq(a).all().item<bool>(), $"assignments {i}");
        }
    }

    [TestMethod]
    public void KMeans_PlusPlus_IsDeterministicForASeed()
    {
        var z = randn(500, 2, ScalarType.Float64, generator: Mat.Rng(3));
        var o = new KMeansOptions { Init = CodebookInit.KMeansPlusPlus, Seed = 11 };
        var (c1, _) = WeightedKMeans.Fit(z, null, 16, o);
        var (c2, _) = WeightedKMeans.Fit(z, null, 16, o);
        Assert.IsTrue(c1.eq(c2).all().item<bool>());
    }

    private static (Tensor W, Tensor H) Layer(int m, int n, ulong seed)
    {
        var g = Mat.Rng(seed);
        return (Mat.Randn(m, n, g), Mat.CorrelatedHessian(n, 4 * n, g));
    }

    [TestMethod]
    public void Gptvq_AndBlockLdlq_AreDeterministic()
    {
        var (w, h) = Layer(32, 64, 4);
        var o = new GptvqOptions { VectorDim = 2, ColumnsPerGroup = 32, WeightsPerCodebook = 512, KMeans = new KMeansOptions { Iterations = 10 } };
        using var a = Gptvq.Quantize(w, h, o);
        using var b = Gptvq.Quantize(w, h, o);
        Assert.IsTrue(a.Indices.eq(b.Indices).all().item<bool>());
        for (int t = 0; t < a.Codebooks.Length; t++) Assert.IsTrue(a.Codebooks[t].eq(b.Codebooks[t]).all().item<bool>());

        var lo = new BlockLdlqOptions { Layout = new VqLayout(2, 16, 32), KMeans = new KMeansOptions { Init = CodebookInit.KMeansPlusPlus, Seed = 5 } };
        using var c = BlockLdlq.Quantize(w, h, null, lo);
        using var d = BlockLdlq.Quantize(w, h, null, lo);
        Assert.IsTrue(c.Dequantize().eq(d.Dequantize()).all().item<bool>());
    }

    [TestMethod]
    public void VectorMethods_BeatRoundToNearestAtTheSameBudget()
    {
        var (w, h) = Layer(64, 128, 5);
        using var rtn = RoundToNearest.Quantize(w, 2, 128);
        using var gptvq = Gptvq.Quantize(w, h, new GptvqOptions { ColumnsPerGroup = 128, WeightsPerCodebook = 8192 });
        using var ldlq = BlockLdlq.Quantize(w, h, null, new BlockLdlqOptions { Layout = new VqLayout(2, 64, 128) });
        double eR = HessianFactor.RelativeProxyError(w, rtn.Dequantize(), h);
        double eV = HessianFactor.RelativeProxyError(w, gptvq.Dequantize(), h);
        double eL = HessianFactor.RelativeProxyError(w, ldlq.Dequantize(), h);
        Assert.IsLessThan(eR, eV, $"GPTVQ {eV:g3} vs RTN {eR:g3}");
        Assert.IsLessThan(eR, eL, $"BlockLDLQ {eL:g3} vs RTN {eR:g3}");
        Assert.IsLessThanOrEqualTo(2.25, gptvq.Cost().BitsPerWeight);
        Assert.IsLessThanOrEqualTo(2.25, ldlq.Cost().BitsPerWeight);
    }

    [TestMethod]
    public void GradientShift_LowersTheFirstPlusSecondOrderLoss()
    {
        var g = Mat.Rng(6);
        int m = 32, n = 64;
        var w = Mat.Randn(m, n, g);
        var h = Mat.CorrelatedHessian(n, 256, g);
        var grad = 0.05 * h.diagonal().mean().item<double>() * Mat.Randn(m, n, g);
        var o = new BlockLdlqOptions { Layout = new VqLayout(2, m, 32) };
        using var plain = BlockLdlq.Quantize(w, h, null, o);
        var shifted = GradientShift.OneSided(w, grad, h, null, new GradientShiftOptions { Beta = 1 });
        using var aware = BlockLdlq.Quantize(shifted, h, null, o);
        double lossPlain = HessianFactor.LossModel(w, plain.Dequantize(), h, grad, null);
        double lossAware = HessianFactor.LossModel(w, aware.Dequantize(), h, grad, null);
        Assert.IsLessThan(lossPlain, lossAware, $"gradient-aware {lossAware:g4} vs plain {lossPlain:g4}");
    }

    [TestMethod]
    public void VqCost_CountsIndicesAndCodebooks()
    {
        var (w, h) = Layer(64, 128, 7);
        using var q = Gptvq.Quantize(w, h, new GptvqOptions { VectorDim = 2, ColumnsPerGroup = 64, WeightsPerCodebook = 2048 });
        var cost = q.Cost();
        Assert.AreEqual(new VqLayout(2, 32, 64), q.Layout);
        Assert.HasCount(4, q.Codebooks);
        Assert.AreEqual(64 * 128 * 2.0, cost.IndexBits);
        Assert.AreEqual(4 * (16 * 2 * 8 + 16.0), cost.CodebookBits);
        Assert.AreEqual(2 + 4 * (256 + 16.0) / (64 * 128), cost.BitsPerWeight, 1e-12);
    }

    [TestMethod]
    public void Int8Codebooks_HoldAtMost255Levels()
    {
        var c = randn(256, 4, ScalarType.Float64, generator: Mat.Rng(8));
        var r = Codebook.Round(c, CodebookPrecision.Int8);
        var scale = r.abs().max().item<double>() / 127;
        var levels = (r / scale).round();
        Mat.AssertClose(r / scale, levels, 1e-9, "int8 grid");
        Assert.IsLessThanOrEqualTo(127.0, levels.abs().max().item<double>());
    }
}
