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
        long groups = codebooks.shape[0], k = codebooks.shape[1], d = codebooks.shape[2], m = x.shape[0];
        var xr = x.reshape(groups, m / groups, d);
        var cm = codebooks.matmul(metric);                               // [G, K, d]
        var cc = (cm * codebooks).sum(-1).unsqueeze(1);                    // [G, 1, K]
        var dist = cc - 2 * xr.matmul(cm.transpose(1, 2));                 // [G, R, K] (+ x M xᵀ, constant per row)
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
        long k = codebook.shape[0], d = codebook.shape[1], r = targets.shape[0], v = indices.shape[1];
        var t = targets.reshape(r, v, d);
        var m = metrics.unsqueeze(0).expand(r, v, d, d);
        if (rowWeights is not null) m = m * rowWeights.reshape(r, 1, 1, 1);
        var mt = m.matmul(t.unsqueeze(-1)).squeeze(-1);                   // [R, V, d]
        var a = indices.reshape(-1);
        var sumM = zeros(k, d, d, codebook.dtype, codebook.device).index_add_(0, a, m.reshape(-1, d, d), 1);
        var sumMt = zeros(k, d, codebook.dtype, codebook.device).index_add_(0, a, mt.reshape(-1, d), 1);
        var used = bincount(a, minlength: k).gt(0);
        // A tiny ridge keeps singular sums (e.g. a dead input dimension) solvable without moving used codewords.
        var ridge = eye(d, dtype: codebook.dtype, device: codebook.device) * 1e-12;
        var scale = sumM.diagonal(0, 1, 2).mean(new long[] { -1 }).clamp_min(1e-300).reshape(k, 1, 1);
        var solved = linalg.solve(sumM + ridge * scale, sumMt.unsqueeze(-1)).squeeze(-1);
        var ok = used.logical_and(solved.isfinite().all(-1));
        return where(ok.unsqueeze(1), solved, codebook).MoveToOuterDisposeScope();
    }
}
