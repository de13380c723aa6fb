using Msavq.MLNet.Quantization;
using static TorchSharp.torch;

namespace Msavq.MLNet.Sensitivity;

/// <summary>Local and global salience of algorithm.md §8.3 (pure tensor math, float64).</summary>
public static class Salience
{
    /// <summary>
    /// Local salience per tile: s_loc(c) = Σ_{i∈rows(c)} Σ_{j∈cols(c)} b_i · W_ij² / [A_λ⁻¹]_jj (OBS saliency × output factor).
    /// </summary>
    public static double[] Local(Tensor w, Tensor aDamped, Tensor b, VqLayout layout)
    {
        using var scope = NewDisposeScope();
        var l = HessianFactor.Cholesky(aDamped, 0).Lower;
        var invDiag = cholesky_inverse(l).diagonal();
        var s = w.to(ScalarType.Float64).pow(2) / invDiag.unsqueeze(0) * b.to(ScalarType.Float64).unsqueeze(1);
        int rg = layout.RowGroups(w.shape[0]), cg = layout.ColumnGroups(w.shape[1]);
        var tiles = s.reshape(rg, layout.RowsPerGroup, cg, layout.ColumnsPerGroup).sum(new long[] { 1, 3 });
        return tiles.reshape(-1).cpu().data<double>().ToArray();
    }

    /// <summary>
    /// Global salience of a layer: s_glob = tr(E A Eᵀ diag b), E the error of a cheap trial quantization (RTN at
    /// <paramref name="trialBits"/>, groups of 64); un-normalized so layers compare (§8.3, §7.2).
    /// </summary>
    public static double Global(Tensor w, Tensor a, Tensor b, int trialBits)
    {
        using var scope = NewDisposeScope();
        using var q = RoundToNearest.Quantize(w.to(ScalarType.Float64), Math.Clamp(trialBits, 2, 8), 64);
        var e = q.Dequantize() - w.to(ScalarType.Float64);
        return ((e * b.to(ScalarType.Float64).unsqueeze(1)).matmul(a.to(ScalarType.Float64)) * e).sum().item<double>();
    }

    /// <summary>
    /// Combined score per tile: s(c) = (s_glob(ℓ) / mean_ℓ' s_glob)^γ · s_loc(c) / Σ_{c'∈ℓ} s_loc(c'): the layer's
    /// share of the global salience spread over its tiles by their local salience (§8.3, product form).
    /// </summary>
    public static double[][] Combine(IReadOnlyList<double[]> local, IReadOnlyList<double> global, double gamma)
    {
        double meanGlobal = global.Average();
        if (!(meanGlobal > 0)) meanGlobal = 1;
        return local.Select((loc, l) =>
        {
            double total = loc.Sum();
            double g = Math.Pow(Math.Max(global[l], 0) / meanGlobal, gamma);
            return loc.Select(s => total > 0 ? g * s / total : g / loc.Length).ToArray();
        }).ToArray();
    }
}
