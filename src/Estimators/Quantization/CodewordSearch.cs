using TorchSharp;
using static TorchSharp.torch;

namespace Msavq.MLNet.Quantization;

/// <summary>Metric-weighted nearest codeword for a column of vectors, all row groups at once.</summary>
internal static class CodewordSearch
{
    /// <param name="x">[m, d] one vector per row.</param>
    /// <param name="codebooks">[groups, K, d]: row group r (rows r·R … r·R+R−1) uses codebooks[r].</param>
    /// <param name="metric">[d, d] symmetric PSD metric M: cost (c − x) M (c − x)ᵀ.</param>
    /// <returns>Indices [m] and the chosen codewords [m, d].</returns>
    public static (Tensor Indices, Tensor Codewords) Nearest(Tensor x, Tensor codebooks, Tensor metric)
    {
        using var scope = NewDisposeScope();
        using var two = 2.ToScalar();   // explicit Scalars throughout (WeightedKMeans says why)
        long groups = codebooks.shape[0], k = codebooks.shape[1], d = codebooks.shape[2], m = x.shape[0];
        var xr = x.reshape(groups, m / groups, d);
        var cm = codebooks.matmul(metric);                               // [G, K, d]
        var cc = (cm * codebooks).sum(-1).unsqueeze(1);                    // [G, 1, K]
        var dist = cc.sub(xr.matmul(cm.transpose(1, 2)).mul(two));               // [G, R, K] (+ x M xᵀ, constant per row)
        var idx = dist.argmin(-1);                                         // [G, R]
        var q = codebooks.gather(1, idx.unsqueeze(-1).expand(groups, m / groups, d));
        return (idx.reshape(m).MoveToOuterDisposeScope(), q.reshape(m, d).MoveToOuterDisposeScope());
    }

    /// <summary>
    /// Closed-form codebook refinement with assignments fixed: c_k = (Σ_{p∈k} M_p)⁻¹ Σ_{p∈k} M_p t_p with
    /// M_p = rowWeight_i · metric_block (algorithm.md §8.4 steps 6/9). Codewords nobody uses stay as they are.
    /// </summary>
    /// <param name="targets">[R, C] the targets each vector was quantized against.</param>
    /// <param name="indices">[R, C/d] assignments.</param>
    /// <param name="metrics">[C/d, d, d] the metric of each vector column.</param>
    /// <param name="rowWeights">[R] or null.</param>
    public static Tensor Refine(Tensor codebook, Tensor targets, Tensor indices, Tensor metrics, Tensor? rowWeights)
    {
        using var scope = NewDisposeScope();
        using var one = 1.ToScalar();
        using var zero = 0.ToScalar();
        using var tiny = 1e-300.ToScalar();
        using var ridge = 1e-10.ToScalar();
        long k = codebook.shape[0], d = codebook.shape[1], r = targets.shape[0], v = indices.shape[1];
        var t = targets.reshape(r, v, d);
        var m = metrics.unsqueeze(0).expand(r, v, d, d);
        if (rowWeights is not null) m = m * rowWeights.reshape(r, 1, 1, 1);
        var mt = m.matmul(t.unsqueeze(-1)).squeeze(-1);                   // [R, V, d]
        var a = indices.reshape(-1);
        var sumM = zeros(k, d, d, codebook.dtype, codebook.device).index_add_(0, a, m.reshape(-1, d, d), one);
        var sumMt = zeros(k, d, codebook.dtype, codebook.device).index_add_(0, a, mt.reshape(-1, d), one);
        var used = bincount(a, minlength: k).gt(zero);
        // Solve in float64 with a tiny relative ridge: float32 sums of badly scaled D_k blocks can be numerically
        // singular. A codeword whose system still fails keeps the diagonal (per-dimension weighted mean) update.
        var m64 = sumM.to(ScalarType.Float64);
        var v64 = sumMt.to(ScalarType.Float64);
        var scale = m64.diagonal(0, 1, 2).mean(new long[] { -1 }).clamp_min(tiny).reshape(k, 1, 1);
        var ridged = m64.add(eye(d, dtype: ScalarType.Float64, device: codebook.device) * scale.mul(ridge), one);
        var (chol, info) = linalg.cholesky_ex(ridged, check_errors: false);    // Σ M_p is symmetric PSD
        var safe = where(info.eq(zero).reshape(k, 1, 1), chol, eye(d, dtype: ScalarType.Float64, device: codebook.device).expand(k, d, d));
        var solved = cholesky_solve(v64.unsqueeze(-1), safe).squeeze(-1);
        var diagonal = v64 / m64.diagonal(0, 1, 2).clamp_min(tiny);
        var good = info.eq(zero).unsqueeze(1).logical_and(solved.isfinite());
        solved = where(good, solved, diagonal).to(codebook.dtype);
        var ok = used.unsqueeze(1).logical_and(solved.isfinite());
        return where(ok, solved, codebook).MoveToOuterDisposeScope();
    }

    /// <summary>
    /// Keeps the refined codebooks only if they lower tr(E A Eᵀ diag b) against <paramref name="target"/>. The
    /// refinement holds the sweep's targets fixed, but those targets moved with the feedback of the old codewords;
    /// where the feedback amplified (ill-conditioned A, one wide column group) refining toward them can raise the
    /// true error by orders of magnitude, so it is measured, not trusted.
    /// </summary>
    public static Tensor[] KeepIfBetter(Tensor target, Tensor a, Tensor? rowWeights, VqLayout layout, Tensor indices,
                                        Tensor[] before, Tensor[] after)
    {
        double Error(Tensor[] books)
        {
            using var scope = NewDisposeScope();
            var q = new VectorQuantizedWeight { Layout = layout, Indices = indices, Codebooks = books, Precision = CodebookPrecision.Float32 };
            var e = (q.Dequantize() - target).to(ScalarType.Float64);
            var rows = rowWeights is null ? e : e * rowWeights.to(ScalarType.Float64).unsqueeze(1);
            return (rows.matmul(a.to(ScalarType.Float64)) * e).sum().item<double>();
        }
        return Error(after) < Error(before) ? after : before;
    }
}
