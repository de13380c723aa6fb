using TorchSharp;
using static TorchSharp.torch;

namespace Msavq.MLNet.Quantization;

public enum CodebookInit
{
    /// <summary>GPTVQ's deterministic init: points sorted by Mahalanobis distance to the mean, K evenly spaced quantiles.</summary>
    MahalanobisQuantiles,
    /// <summary>k-means++ (weighted D² sampling) from a seeded generator.</summary>
    KMeansPlusPlus,
}

/// <summary>Options of <see cref="WeightedKMeans"/>.</summary>
public sealed record KMeansOptions
{
    public int Iterations { get; init; } = 100;
    /// <summary>
    /// Stop once an iteration lowers the total weighted cost by less than this fraction (0: run every iteration unless
    /// no assignment changes). Most tiles settle in a few dozen of the 100 iterations GPTVQ's scripts allow.
    /// </summary>
    public double Tolerance { get; init; } = 1e-4;
    public CodebookInit Init { get; init; } = CodebookInit.MahalanobisQuantiles;
    public long Seed { get; init; } = 0;
    /// <summary>Most distance-matrix entries computed at once (rows × K); bounds memory for K = 65536.</summary>
    public long ChunkElements { get; init; } = 1L << 22;
    /// <summary>
    /// E-step through <see cref="WeightedAssignment"/> (float32 SIMD, no distance matrix) where the points are float32 on
    /// the CPU, instead of chunked matmuls. Off by default: its direct-form distances round differently from the
    /// matmul form, so near-ties can go the other way and results published with the matmul form would not reproduce.
    /// </summary>
    public bool FusedAssignment { get; init; }
    /// <summary>Threads of the fused E-step (default: TorchSharp's intra-op thread count, read when k-means runs).</summary>
    public int? Threads { get; init; }
    /// <summary>
    /// Fit each codebook on at most this many of its points, a seeded sample, then assign every point (null: all
    /// points). Lloyd's cost per iteration falls in proportion; the codebook sees fewer points.
    /// </summary>
    public long? MaxPointsPerCodebook { get; init; }
}

/// <summary>
/// k-means with per-point, per-dimension weights: distance Σ_j w_pj (z_pj − c_j)², M-step the weighted mean
/// (algorithm.md §3.2, §8.4 step 6, diagonal-metric variant). Empty clusters are re-seeded from the worst-fitted
/// points, never left at zero. Distances are matmuls over row chunks.
/// </summary>
/// <remarks>
/// Every number a tensor operation takes is an explicit Scalar disposed at the end of the method: TorchSharp leaves the
/// ones its operators create (<c>t * 2</c>, <c>clamp_min(0)</c>, even the alpha = 1 of <c>a + b</c>) to the finalizer,
/// which can free one while libtorch still reads it (see RmsNorm). ScalarArithmeticTests counts them.
/// </remarks>
public static class WeightedKMeans
{
    /// <param name="z">[P, d] points.</param>
    /// <param name="weights">[P, d] non-negative weights (or [P, 1] / null for uniform per point).</param>
    /// <returns>Centroids [K, d] and assignments [P] (int64).</returns>
    public static (Tensor Centroids, Tensor Assignments) Fit(Tensor z, Tensor? weights, int k, KMeansOptions o)
    {
        if (k < 1) throw new ArgumentOutOfRangeException(nameof(k));
        if (z.shape[0] == 0) throw new ArgumentException("No points to cluster.");
        using var scope = NewDisposeScope();
        var w = weights is null ? ones_like(z) : weights.expand(z.shape[0], z.shape[1]).to(z.dtype);
        var (c, a) = FitBatched(z.unsqueeze(0), w.unsqueeze(0), k, o);
        return (c[0].MoveToOuterDisposeScope(), a[0].MoveToOuterDisposeScope());
    }

    /// <summary>
    /// Fits B independent codebooks at once (one per row group of a tile column): points [B, P, d], weights
    /// [B, P, d] → centroids [B, K, d], assignments [B, P]. Same algorithm as <see cref="Fit"/>, batched so small
    /// tiles do not pay per-operation overhead (k-means++ seeds each entry on its own).
    /// </summary>
    public static (Tensor Centroids, Tensor Assignments) FitBatched(Tensor z, Tensor weights, int k, KMeansOptions o)
    {
        long batch = z.shape[0], p = z.shape[1], d = z.shape[2];
        if (p == 0) throw new ArgumentException("No points to cluster.");
        using var scope = NewDisposeScope();
        var w = weights.expand(batch, p, d).to(z.dtype);
        var all = new Points(z, w, o);
        if (o.MaxPointsPerCodebook is { } most && p > most && most >= k)
        {
            // Codebooks from a seeded sample of each entry's points (the same positions in every entry), then every
            // point assigned to its nearest codeword.
            using var gen = new Generator((ulong)o.Seed + 0x5A4D, z.device);
            var pick = randperm(p, generator: gen, device: z.device)[..(int)most].sort().Values;
            var sample = new Points(z.index_select(1, pick), w.index_select(1, pick), o);
            var centroids = Iterate(sample, k, o);
            return (centroids.MoveToOuterDisposeScope(), all.Assign(centroids).Assignments.MoveToOuterDisposeScope());
        }
        var c = Iterate(all, k, o);
        return (c.MoveToOuterDisposeScope(), all.Assign(c).Assignments.MoveToOuterDisposeScope());
    }

    /// <summary>The points of a batched fit, with the E-step that suits them (fused kernel or chunked matmuls).</summary>
    private sealed class Points
    {
        public readonly Tensor Z, W;
        private readonly KMeansOptions _o;
        private readonly float[]? _zs, _ws;   // flat copies for the fused E-step, made once rather than per iteration
        private readonly int _threads;

        public Points(Tensor z, Tensor w, KMeansOptions o)
        {
            (Z, W, _o) = (z, w, o);
            if (o.FusedAssignment && z.device_type == DeviceType.CPU && z.dtype == ScalarType.Float32)
            {
                _zs = z.contiguous().cpu().data<float>().ToArray();
                _ws = w.contiguous().cpu().data<float>().ToArray();
            }
            _threads = o.Threads ?? Math.Max(1, torch.get_num_threads());
        }

        public (Tensor Assignments, Tensor Cost) Assign(Tensor centroids) => _zs is not null
            ? AssignFused(_zs, _ws!, centroids, Z.shape[0], Z.shape[1], _threads)
            : AssignBatched(Z, W, centroids, _o.ChunkElements);
    }

    /// <summary>Lloyd iterations from the configured init until assignments settle, the cost stalls or the budget ends.</summary>
    private static Tensor Iterate(Points x, int k, KMeansOptions o)
    {
        var c = o.Init == CodebookInit.MahalanobisQuantiles
            ? MahalanobisInit(x.Z, k)
            : stack(Enumerable.Range(0, (int)x.Z.shape[0]).Select(i => PlusPlusInit(x.Z[i], x.W[i], k, o.Seed)));
        Tensor? assign = null;
        double previous = double.PositiveInfinity;
        for (int it = 0; it < o.Iterations; it++)
        {
            // One scope per EM iteration: its distances and sums are freed before the next one starts.
            using var iteration = NewDisposeScope();
            var (a, cost) = x.Assign(c);
            double total = cost.sum().to(ScalarType.Float64).item<double>();
            bool same = assign is not null && (a.eq(assign).all().item<bool>()
                                               || o.Tolerance > 0 && previous - total <= o.Tolerance * previous);
            previous = total;
            var next = MStepBatched(x.Z, x.W, a, c, cost).MoveToOuterDisposeScope();
            assign?.Dispose();
            assign = a.MoveToOuterDisposeScope();
            c.Dispose();
            c = next;
            if (same) break;
        }
        assign?.Dispose();
        return c;
    }

    private static (Tensor Assignments, Tensor Cost) AssignBatched(Tensor z, Tensor w, Tensor c, long chunkElements)
    {
        long batch = z.shape[0], p = z.shape[1], k = c.shape[1];
        long rows = Math.Max(1, chunkElements / Math.Max(batch * k, 1));
        using var one = 1.ToScalar();
        using var two = 2.ToScalar();
        using var zero = 0.ToScalar();
        var assignments = empty(batch, p, ScalarType.Int64, z.device);
        var cost = empty(batch, p, z.dtype, z.device);
        var c2 = (c * c).transpose(1, 2);
        var ct = c.transpose(1, 2);
        for (long r0 = 0; r0 < p; r0 += rows)
        {
            using var scope = NewDisposeScope();
            long r1 = Math.Min(r0 + rows, p);
            var zc = z[.., (int)r0..(int)r1];
            var wc = w[.., (int)r0..(int)r1];
            var dist = wc.matmul(c2).sub((wc * zc).matmul(ct).mul(two)).add((wc * zc * zc).sum(-1, keepdim: true), one);
            var (best, arg) = dist.min(-1);
            assignments[.., (int)r0..(int)r1] = arg;
            cost[.., (int)r0..(int)r1] = best.clamp_min(zero);
        }
        return (assignments, cost);
    }

    private static (Tensor Assignments, Tensor Cost) AssignFused(float[] z, float[] w, Tensor c, long batch, long p, int threads)
    {
        int d = (int)c.shape[2];
        var a = new int[batch * p];
        var cost = new float[batch * p];
        WeightedAssignment.AssignBatched(z, w, c.contiguous().cpu().data<float>().ToArray(), (int)batch, d, a, cost, threads);
        return (tensor(a, device: c.device).to(ScalarType.Int64).reshape(batch, p), tensor(cost, device: c.device).reshape(batch, p));
    }

    private static Tensor MStepBatched(Tensor z, Tensor w, Tensor a, Tensor c, Tensor cost)
    {
        long batch = c.shape[0], k = c.shape[1], d = c.shape[2];
        using var one = 1.ToScalar();
        using var zero = 0.ToScalar();
        using var tiny = 1e-300.ToScalar();
        var offsets = tensor(Enumerable.Range(0, (int)batch).Select(i => i * k).ToArray(), device: a.device).unsqueeze(1);
        var flat = a.add(offsets, one).reshape(-1);   // batch-offset cluster ids
        var num = zeros(batch * k, d, z.dtype, z.device).index_add_(0, flat, (w * z).reshape(-1, d), one);
        var den = zeros(batch * k, d, z.dtype, z.device).index_add_(0, flat, w.reshape(-1, d), one);
        var counts = bincount(flat, minlength: batch * k).reshape(batch, k);
        var next = where(den.gt(zero), num / den.clamp_min(tiny), c.reshape(-1, d)).reshape(batch, k, d);
        if (counts.eq(zero).any().item<bool>())
            for (long b = 0; b < batch; b++)
            {
                var empty = counts[b].eq(zero).nonzero().squeeze(1);
                long nEmpty = empty.shape[0];
                if (nEmpty == 0) continue;
                var worst = cost[b].argsort(descending: true)[..(int)Math.Min(nEmpty, z.shape[1])];
                for (long i = 0; i < nEmpty; i++) next[b, empty[i]] = z[b, worst[i % worst.shape[0]]];
            }
        return next;
    }

    /// <summary>Nearest centroid under per-dimension weights, and each point's cost.</summary>
    public static (Tensor Assignments, Tensor Cost) Assign(Tensor z, Tensor w, Tensor c, long chunkElements = 1L << 22)
    {
        long p = z.shape[0], k = c.shape[0];
        long rows = Math.Max(1, chunkElements / Math.Max(k, 1));
        using var one = 1.ToScalar();
        using var two = 2.ToScalar();
        using var zero = 0.ToScalar();
        var assignments = empty(p, ScalarType.Int64, z.device);
        var cost = empty(p, z.dtype, z.device);
        var c2 = (c * c).t();
        var ct = c.t();
        for (long r0 = 0; r0 < p; r0 += rows)
        {
            using var scope = NewDisposeScope();
            long r1 = Math.Min(r0 + rows, p);
            var zc = z[(int)r0..(int)r1];
            var wc = w[(int)r0..(int)r1];
            // Σ_j w (z − c)² = Σ w z² − 2 (w∘z)·c + w·c²
            var dist = wc.matmul(c2).sub((wc * zc).matmul(ct).mul(two)).add((wc * zc * zc).sum(1, keepdim: true), one);
            var (best, arg) = dist.min(1);
            assignments[(int)r0..(int)r1] = arg;
            cost[(int)r0..(int)r1] = best.clamp_min(zero);
        }
        return (assignments, cost);
    }

    /// <summary>GPTVQ's init per batch entry: points sorted by Mahalanobis distance to their mean, K evenly spaced quantiles.</summary>
    private static Tensor MahalanobisInit(Tensor z, int k)
    {
        long batch = z.shape[0], p = z.shape[1], d = z.shape[2];
        using var one = 1.ToScalar();
        using var count = Math.Max(p - 1, 1).ToScalar();
        using var ridge = 1e-10.ToScalar();
        var mu = z.mean(new long[] { 1 }, keepdim: true);
        var diff = z - mu;
        var cov = diff.transpose(1, 2).matmul(diff).div(count).add(eye(d, dtype: z.dtype, device: z.device).mul(ridge), one);
        var dist = (diff.matmul(linalg.inv(cov)) * diff).sum(-1);                   // [B, P]
        var at = linspace(0, p - 1, k, dtype: ScalarType.Float64, device: z.device).round().to(ScalarType.Int64);
        var pick = dist.argsort(1).index_select(1, at);                               // [B, K]
        return z.gather(1, pick.unsqueeze(-1).expand(batch, k, d)).clone();
    }

    private static Tensor PlusPlusInit(Tensor z, Tensor w, int k, long seed)
    {
        long p = z.shape[0];
        using var gen = new Generator((ulong)seed, z.device);
        var first = randint(0, p, new long[] { 1 }, generator: gen, device: z.device);
        var c = z.index_select(0, first);
        var best = Assign(z, w, c).Cost;
        for (int i = 1; i < k; i++)
        {
            var probs = best.sum().to(ScalarType.Float64).item<double>() > 0 ? best.to(ScalarType.Float64) : ones(p, ScalarType.Float64, z.device);
            var next = multinomial(probs, 1, generator: gen);
            var cn = z.index_select(0, next);
            c = cat(new[] { c, cn }, 0);
            best = minimum(best, Assign(z, w, cn).Cost);
        }
        return c;
    }
}
