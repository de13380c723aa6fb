using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using System.Runtime.Intrinsics;

namespace Msavq.MLNet.Quantization;

/// <summary>
/// Fused weighted nearest-centroid search: for each point p, argmin_k Σ_j w_pj (z_pj − c_kj)² and its cost, without
/// materialising the [P, K] distance matrix the matmul form writes (algorithm.md §3.2, the E-step of the diagonal-metric
/// k-means). The running minimum stays in registers, eight centroids per SIMD lane group; centroids are visited in
/// cache-sized blocks so K up to 65,536 stays in L2.
/// </summary>
/// <remarks>
/// The distance is summed in the direct form (z − c)·w·(z − c), dimension by dimension in order, with no fused
/// multiply-add, so <see cref="AssignReference"/> (plain scalar loops) gives bit-identical costs and indices: ties go to
/// the lowest index in both. The direct form also avoids the cancellation of the expanded Σwz² − 2(wz)·c + Σwc² in
/// float32, which can turn a small distance negative.
/// </remarks>
internal static class WeightedAssignment
{
    /// <summary>Centroids per cache block (×d floats): 2,048 × 8 × 4 B = 64 KB at the widest d, within L2.</summary>
    private const int Block = 2048;

    /// <summary>Points per parallel work item.</summary>
    private const int PointsPerItem = 256;

    /// <param name="z">[P·d] points, row-major.</param>
    /// <param name="w">[P·d] per-dimension weights (non-negative), row-major.</param>
    /// <param name="c">[K·d] centroids, row-major.</param>
    /// <param name="assignments">[P] the nearest centroid of each point (lowest index on ties).</param>
    /// <param name="cost">[P] its weighted squared distance.</param>
    /// <param name="threads">Worker threads (≥ 1); the result does not depend on it.</param>
    public static void Assign(float[] z, float[] w, float[] c, int d, int[] assignments, float[] cost, int threads = 1) =>
        AssignBatched(z, w, c, 1, d, assignments, cost, threads);

    /// <summary>
    /// B independent searches at once: entry b's points are rows b·P … b·P+P−1 of <paramref name="z"/> and its centroids
    /// rows b·K … b·K+K−1 of <paramref name="c"/>; the assignments index within the entry's own centroids.
    /// </summary>
    public static void AssignBatched(float[] z, float[] w, float[] c, int batch, int d, int[] assignments, float[] cost, int threads = 1)
    {
        if (batch < 1) throw new ArgumentOutOfRangeException(nameof(batch), batch, "Batch must be >= 1.");
        Check(z, w, c, d, assignments, cost);
        if (assignments.Length % batch != 0 || c.Length / d % batch != 0)
            throw new ArgumentException($"{assignments.Length} points and {c.Length / d} centroids do not split into {batch} equal entries.");
        int p = assignments.Length / batch, k = c.Length / d / batch;
        if (!Vector256.IsHardwareAccelerated || k < Vector256<float>.Count)
        {
            AssignReference(z, w, c, batch, d, assignments, cost);
            return;
        }
        var transposed = new float[batch][];
        int padded = 0;
        for (int b = 0; b < batch; b++) transposed[b] = Transpose(c, b * k * d, d, k, out padded);
        int perEntry = (p + PointsPerItem - 1) / PointsPerItem, items = batch * perEntry;
        if (threads <= 1 || items == 1)
            for (int i = 0; i < items; i++) Run(i);
        else
            Parallel.For(0, items, new ParallelOptions { MaxDegreeOfParallelism = threads }, Run);

        void Run(int item)
        {
            int b = item / perEntry, p0 = b * p + item % perEntry * PointsPerItem, p1 = Math.Min(b * p + p, p0 + PointsPerItem);
            AssignRange(z, w, transposed[b], d, padded, p0, p1, assignments, cost);
        }
    }

    /// <summary>The same search in plain scalar loops: the reference <see cref="AssignBatched"/> is tested against.</summary>
    public static void AssignReference(float[] z, float[] w, float[] c, int batch, int d, int[] assignments, float[] cost)
    {
        Check(z, w, c, d, assignments, cost);
        int p = assignments.Length / batch, k = c.Length / d / batch;
        for (int i = 0; i < assignments.Length; i++)
        {
            int c0 = i / p * k * d;
            float best = float.PositiveInfinity;
            int arg = 0;
            for (int q = 0; q < k; q++)
            {
                float acc = 0f;
                for (int j = 0; j < d; j++)
                {
                    float diff = z[i * d + j] - c[c0 + q * d + j];
                    acc += w[i * d + j] * diff * diff;
                }
                if (acc < best) { best = acc; arg = q; }
            }
            assignments[i] = arg;
            cost[i] = best;
        }
    }

    private static void Check(float[] z, float[] w, float[] c, int d, int[] assignments, float[] cost)
    {
        if (d < 1) throw new ArgumentOutOfRangeException(nameof(d), d, "Vector dimension must be >= 1.");
        if (c.Length == 0 || c.Length % d != 0) throw new ArgumentException($"Centroids hold {c.Length} values, not a positive multiple of d = {d}.");
        long p = assignments.Length;
        if (z.Length != p * d || w.Length != p * d || cost.Length != p)
            throw new ArgumentException($"Points ({z.Length}), weights ({w.Length}) and outputs ({assignments.Length}, {cost.Length}) disagree for d = {d}.");
    }

    /// <summary>
    /// Centroids as [d, K'] (dimension-major) with K' the next multiple of 8; the padding repeats the last centroid, whose
    /// distance then ties with the real one and loses the tie by its larger index, so padded lanes never win.
    /// </summary>
    private static float[] Transpose(float[] c, int offset, int d, int k, out int padded)
    {
        int lanes = Vector256<float>.Count;
        padded = (k + lanes - 1) / lanes * lanes;
        var t = new float[d * padded];
        for (int q = 0; q < padded; q++)
        {
            int src = Math.Min(q, k - 1);
            for (int j = 0; j < d; j++) t[j * padded + q] = c[offset + src * d + j];
        }
        return t;
    }

    private static void AssignRange(float[] z, float[] w, float[] ct, int d, int padded, int p0, int p1, int[] assignments, float[] cost)
    {
        int lanes = Vector256<float>.Count;
        // The point's coordinates and weights, broadcast once per point rather than once per centroid group.
        Span<Vector256<float>> zb = stackalloc Vector256<float>[d];
        Span<Vector256<float>> wb = stackalloc Vector256<float>[d];
        for (int i = p0; i < p1; i++) { cost[i] = float.PositiveInfinity; assignments[i] = 0; }
        ref float cRef = ref MemoryMarshal.GetArrayDataReference(ct);
        var step = Vector256.Create(lanes);
        for (int b0 = 0; b0 < padded; b0 += Block)
        {
            int b1 = Math.Min(padded, b0 + Block);
            for (int i = p0; i < p1; i++)
            {
                for (int j = 0; j < d; j++) { zb[j] = Vector256.Create(z[i * d + j]); wb[j] = Vector256.Create(w[i * d + j]); }
                var best = Vector256.Create(float.PositiveInfinity);
                var arg = Vector256<int>.Zero;
                var index = Vector256.Create(0, 1, 2, 3, 4, 5, 6, 7) + Vector256.Create(b0);
                for (int q = b0; q < b1; q += lanes)
                {
                    var acc = Vector256<float>.Zero;
                    for (int j = 0; j < d; j++)
                    {
                        var diff = zb[j] - Vector256.LoadUnsafe(ref Unsafe.Add(ref cRef, j * padded + q));
                        acc += wb[j] * diff * diff;
                    }
                    var less = Vector256.LessThan(acc, best);
                    best = Vector256.ConditionalSelect(less, acc, best);
                    arg = Vector256.ConditionalSelect(less.AsInt32(), index, arg);
                    index += step;
                }
                // Lanes to one: the smallest cost, the lowest index among equal costs; a block only replaces what an
                // earlier (lower-index) block found when it is strictly better.
                float blockBest = float.PositiveInfinity;
                int blockArg = int.MaxValue;
                for (int l = 0; l < lanes; l++)
                {
                    float v = best.GetElement(l);
                    int a = arg.GetElement(l);
                    if (v < blockBest || v == blockBest && a < blockArg) { blockBest = v; blockArg = a; }
                }
                if (blockBest < cost[i]) { cost[i] = blockBest; assignments[i] = blockArg; }
            }
        }
    }
}
