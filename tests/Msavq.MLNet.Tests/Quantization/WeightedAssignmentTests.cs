using Msavq.MLNet.Quantization;
using static TorchSharp.torch;

namespace Msavq.MLNet.Tests.Quantization;

/// <summary>The fused assignment kernel against its scalar reference, and k-means with it against the matmul E-step.</summary>
[TestClass]
public sealed class WeightedAssignmentTests
{
    private static float[] Random(Random rng, int n, float scale, float offset = 0f) =>
        Enumerable.Range(0, n).Select(_ => offset + scale * (float)(rng.NextDouble() * 2 - 1)).ToArray();

    [TestMethod]
    [DataRow(16, 1, false)] [DataRow(16, 2, true)] [DataRow(16, 4, true)] [DataRow(16, 8, false)]
    [DataRow(256, 1, true)] [DataRow(256, 2, false)] [DataRow(256, 4, true)] [DataRow(256, 8, true)]
    [DataRow(4096, 1, false)] [DataRow(4096, 2, true)] [DataRow(4096, 4, false)] [DataRow(4096, 8, true)]
    [DataRow(13, 2, true)] [DataRow(8, 4, false)]
    public void Simd_IsBitIdenticalToTheScalarReference(int k, int d, bool weighted)
    {
        var rng = new Random(k * 31 + d);
        const int batch = 2, p = 600;   // two entries, each more than two work items of points
        var z = Random(rng, batch * p * d, 1f);
        var w = weighted ? Random(rng, batch * p * d, 0.5f, 0.6f) : Enumerable.Repeat(1f, batch * p * d).ToArray();
        var c = Random(rng, batch * k * d, 1f);
        var (a0, c0) = (new int[batch * p], new float[batch * p]);
        WeightedAssignment.AssignReference(z, w, c, batch, d, a0, c0);
        foreach (int threads in new[] { 1, 2 })
        {
            var (a1, c1) = (new int[batch * p], new float[batch * p]);
            WeightedAssignment.AssignBatched(z, w, c, batch, d, a1, c1, threads);
            CollectionAssert.AreEqual(a0, a1, $"assignments, {threads} thread(s)");
            CollectionAssert.AreEqual(c0, c1, $"costs, {threads} thread(s)");
        }
        Assert.IsTrue(a0.All(i => i >= 0 && i < k), "an index outside the entry's codebook");
    }

    [TestMethod]
    public void Ties_GoToTheLowestIndex_AcrossLanesAndBlocks()
    {
        // 5,000 centroids, all equal except that the ones at 3 and 4,100 (second cache block) are the same nearer point.
        const int k = 5000, d = 2;
        var c = Enumerable.Repeat(3f, k * d).ToArray();
        foreach (int q in new[] { 3, 4100 }) { c[q * d] = 0.5f; c[q * d + 1] = 0.5f; }
        var z = new[] { 0.5f, 0.5f, 3f, 3f };
        var w = new[] { 1f, 1f, 1f, 1f };
        var (a, cost) = (new int[2], new float[2]);
        WeightedAssignment.Assign(z, w, c, d, a, cost);
        CollectionAssert.AreEqual(new[] { 3, 0 }, a);
        CollectionAssert.AreEqual(new[] { 0f, 0f }, cost);
    }

    [TestMethod]
    public void Costs_MatchTheMatmulForm_InFloat64()
    {
        var rng = new Random(7);
        const int p = 500, k = 64, d = 4;
        var z = Random(rng, p * d, 1f);
        var w = Random(rng, p * d, 0.5f, 0.6f);
        var c = Random(rng, k * d, 1f);
        var (a, cost) = (new int[p], new float[p]);
        WeightedAssignment.Assign(z, w, c, d, a, cost, threads: 2);
        var zt = tensor(z).reshape(p, d).to(ScalarType.Float64);
        var (ea, ecost) = WeightedKMeans.Assign(zt, tensor(w).reshape(p, d).to(ScalarType.Float64), tensor(c).reshape(k, d).to(ScalarType.Float64));
        var expected = ecost.data<double>().ToArray();
        for (int i = 0; i < p; i++)
            Assert.AreEqual(expected[i], cost[i], 1e-5 * (1 + expected[i]), $"point {i}: chose {a[i]}, float64 chose {ea[i].item<long>()}");
    }

    [TestMethod]
    public void Rejects_InconsistentShapes()
    {
        Assert.ThrowsExactly<ArgumentException>(() => WeightedAssignment.Assign(new float[6], new float[6], new float[5], 2, new int[3], new float[3]));
        Assert.ThrowsExactly<ArgumentException>(() => WeightedAssignment.Assign(new float[6], new float[4], new float[4], 2, new int[3], new float[3]));
        Assert.ThrowsExactly<ArgumentException>(() => WeightedAssignment.AssignBatched(new float[6], new float[6], new float[8], 2, 2, new int[3], new float[3]));
    }

    [TestMethod]
    [DataRow(2, 16)] [DataRow(4, 256)]
    public void KMeans_WithTheFusedStep_FitsAsWellAsTheMatmulStep(int d, int k)
    {
        var g = Mat.Rng(3);
        var z = randn(4, 2048, d, ScalarType.Float32, generator: g);
        var w = rand(4, 2048, d, ScalarType.Float32, generator: g) + 0.5;
        double Cost(Tensor c, Tensor a)
        {
            var q = c.gather(1, a.unsqueeze(-1).expand(4, 2048, d));
            return (w * (z - q).square()).sum().to(ScalarType.Float64).item<double>();
        }
        var o = new KMeansOptions { Iterations = 30 };
        var (cm, am) = WeightedKMeans.FitBatched(z, w, k, o);
        var (cf, af) = WeightedKMeans.FitBatched(z, w, k, o with { FusedAssignment = true });
        double matmul = Cost(cm, am), fused = Cost(cf, af);
        Assert.AreEqual(matmul, fused, 0.01 * matmul, $"weighted cost: matmul E-step {matmul:G6}, fused {fused:G6}");
        // Same seed, same kernel: bit-identical centroids.
        var (cf2, _) = WeightedKMeans.FitBatched(z, w, k, o with { FusedAssignment = true });
        Assert.IsTrue(cf.eq(cf2).all().item<bool>(), "the fused path is not deterministic");
    }

    [TestMethod]
    public void KMeans_OnASample_FitsAlmostAsWell_AndAssignsEveryPoint()
    {
        var g = Mat.Rng(5);
        var z = randn(2, 8192, 2, ScalarType.Float32, generator: g);
        var w = rand(2, 8192, 2, ScalarType.Float32, generator: g) + 0.5;
        double Cost(Tensor c, Tensor a) =>
            (w * (z - c.gather(1, a.unsqueeze(-1).expand(2, 8192, 2))).square()).sum().to(ScalarType.Float64).item<double>();
        var o = new KMeansOptions { Iterations = 50 };
        var (cAll, aAll) = WeightedKMeans.FitBatched(z, w, 16, o);
        var (cSample, aSample) = WeightedKMeans.FitBatched(z, w, 16, o with { MaxPointsPerCodebook = 2048 });
        Assert.AreEqual(2 * 8192L, aSample.numel());
        double full = Cost(cAll, aAll), sampled = Cost(cSample, aSample);
        Assert.IsLessThan(1.05 * full, sampled, $"weighted cost: all points {full:G6}, a quarter of them {sampled:G6}");
        var (again, _) = WeightedKMeans.FitBatched(z, w, 16, o with { MaxPointsPerCodebook = 2048 });
        Assert.IsTrue(cSample.eq(again).all().item<bool>(), "the sample is not seeded");
    }
}
