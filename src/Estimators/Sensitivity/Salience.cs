using Msavq.MLNet.Quantization;
using TorchSharp;
using static TorchSharp.torch;

namespace Msavq.MLNet.Sensitivity;

/// <summary>Local and global salience of algorithm.md §8.3 (pure tensor math, float64).</summary>
public static class Salience
{
    /// <summary>
    /// Local salience of every weight (§8.3): OBS, b_i · W_ij² / [A_λ⁻¹]_jj; or RSAVQ's gradient form, ½ gᵀF⁻¹g with
    /// the diagonal Kronecker Fisher F_ij = b_i · A_jj, i.e. G_ij² / (b_i · A_jj). [m, n], float64.
    /// </summary>
    public static Tensor Elements(Tensor w, Tensor aDamped, Tensor b, Tensor g, LocalSalience kind)
    {
        using var two = 2.ToScalar();   // explicit Scalar (WeightedKMeans says why)
        var b64 = b.to(ScalarType.Float64).unsqueeze(1);
        if (kind == LocalSalience.Gradient)
            return g.to(ScalarType.Float64).pow(two) / (aDamped.to(ScalarType.Float64).diagonal().unsqueeze(0) * b64);
        var l = HessianFactor.Cholesky(aDamped, 0).Lower;
        var invDiag = cholesky_inverse(l).diagonal();
        return w.to(ScalarType.Float64).pow(two) / invDiag.unsqueeze(0) * b64;
    }

    /// <summary>Per tile (row-major), the sum of its weights' salience.</summary>
    public static double[] Tiles(Tensor scores, VqLayout layout)
    {
        using var scope = NewDisposeScope();
        int rg = layout.RowGroups(scores.shape[0]), cg = layout.ColumnGroups(scores.shape[1]);
        var tiles = scores.reshape(rg, layout.RowsPerGroup, cg, layout.ColumnsPerGroup).sum(new long[] { 1, 3 });
        return tiles.reshape(-1).cpu().data<double>().ToArray();
    }

    /// <summary>Local salience per tile with the OBS form (§8.3).</summary>
    public static double[] Local(Tensor w, Tensor aDamped, Tensor b, VqLayout layout)
    {
        using var scope = NewDisposeScope();
        return Tiles(Elements(w, aDamped, b, w, LocalSalience.Obs), layout);
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
