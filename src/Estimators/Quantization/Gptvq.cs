using TorchSharp;
using static TorchSharp.torch;

namespace Msavq.MLNet.Quantization;

/// <summary>Options of <see cref="Gptvq"/>; defaults follow the GPTVQ paper scripts (algorithm.md §3).</summary>
public sealed record GptvqOptions
{
    /// <summary>d: weights per vector, along the input dimension.</summary>
    public int VectorDim { get; init; } = 2;
    /// <summary>Index bits per weight; K = 2^(bits·d).</summary>
    public double IndexBitsPerWeight { get; init; } = 2;
    /// <summary>C: input columns per codebook tile (also the lazy-update block).</summary>
    public int ColumnsPerGroup { get; init; } = 256;
    /// <summary>S: weights sharing one codebook; rows per tile = S / C.</summary>
    public long WeightsPerCodebook { get; init; } = 2048;
    public double PercentDamping { get; init; } = 0.01;
    public KMeansOptions KMeans { get; init; } = new();
    public CodebookPrecision Precision { get; init; } = CodebookPrecision.Int8;
    /// <summary>Closed-form codebook update with assignments frozen, after the sweep (GPTVQ §3.4 uses Adam).</summary>
    public bool RefineCodebooks { get; init; } = true;

    public int CodebookSize => (int)Math.Round(Math.Pow(2, IndexBitsPerWeight * VectorDim));
}

/// <summary>
/// GPTVQ (van Baalen et al. 2024), as the official code does it (algorithm.md §3): GPTQ's column sweep over
/// d-column vectors; each tile's codebook is fitted lazily, when the sweep reaches its first column, by
/// Hessian-weighted k-means on the already compensated weights; per-dimension weights 1/U_jj² (the OBS-consistent
/// convention, used for both fitting and lookup); the intra-vector update uses only diag(U) (§3.3).
/// </summary>
public static class Gptvq
{
    public static VectorQuantizedWeight Quantize(Tensor weight, Tensor hessian, GptvqOptions o)
    {
        CodebookLimits.Check(o.IndexBitsPerWeight, o.VectorDim);
        long m = weight.shape[0], n = weight.shape[1];
        int d = o.VectorDim, k = o.CodebookSize;
        var layout = VqLayout.ForGroupSize(m, n, d, o.ColumnsPerGroup, o.WeightsPerCodebook);
        layout.Validate(m, n);
        int rg = layout.RowGroups(m), cgN = layout.ColumnGroups(n), C = layout.ColumnsPerGroup, R = layout.RowsPerGroup;
        var (dtype, device) = (weight.dtype, weight.device);
        using var scope = NewDisposeScope();
        using var minusTwo = (-2).ToScalar();   // explicit Scalar (WeightedKMeans says why)

        var (H, W, _) = HessianFactor.HandleDeadInputs(hessian.to(ScalarType.Float64), weight);
        var U = HessianFactor.UpperInverseCholesky(HessianFactor.Cholesky(H, o.PercentDamping).Lower).to(dtype);
        var hw = U.diagonal().pow(minusTwo);                 // OBS weight 1/[H_F⁻¹]_jj per column
        var indices = zeros(m, n / d, ScalarType.Int64, device);
        var books = new Tensor[rg * cgN];
        var targets = o.RefineCodebooks ? zeros(m, n, dtype, device) : null;

        for (int cg = 0; cg < cgN; cg++)
        {
            using var groupScope = NewDisposeScope();   // per column group: the block copy, its errors, the fit
            int g0 = cg * C, g1 = g0 + C;
            var W1 = W[.., g0..g1].clone();
            var Err1 = zeros_like(W1);
            var U1 = U[g0..g1, g0..g1];
            var h1 = hw[g0..g1];
            // Lazy codebook fit: W1 holds every earlier group's feedback, so these are the current weights.
            var stacked = FitTiles(W1, h1, rg, R, d, k, o);
            for (int r = 0; r < rg; r++) books[r * cgN + cg] = stacked[r].clone().MoveToOuterDisposeScope();
            for (int i = 0; i < C; i += d)
            {
                using var step = NewDisposeScope();
                var x = W1[.., i..(i + d)];
                if (targets is not null) targets[.., (g0 + i)..(g0 + i + d)] = x;
                var (idx, q) = CodewordSearch.Nearest(x, stacked, diag(h1[i..(i + d)]));
                indices[.., (g0 + i) / d] = idx;
                var err = (x - q) / U1.diagonal()[i..(i + d)];   // diagonal-only intra-vector feedback (§3.3)
                if (i + d < C) W1[.., (i + d)..] -= err.matmul(U1[i..(i + d), (i + d)..]);
                Err1[.., i..(i + d)] = err;
            }
            if (g1 < n) W[.., g1..] -= Err1.matmul(U[g0..g1, g1..]);
        }

        if (targets is not null)
        {
            var refined = new Tensor[books.Length];
            for (int r = 0; r < rg; r++)
                for (int cg = 0; cg < cgN; cg++)
                {
                    int g0 = cg * C;
                    var metrics = diag_embed(hw[g0..(g0 + C)].reshape(C / d, d));
                    var book = CodewordSearch.Refine(books[r * cgN + cg], targets[(r * R)..((r + 1) * R), g0..(g0 + C)],
                        indices[(r * R)..((r + 1) * R), (g0 / d)..((g0 + C) / d)], metrics, null);
                    refined[r * cgN + cg] = Codebook.Round(book, o.Precision);
                }
            books = CodewordSearch.KeepIfBetter(weight, H, null, layout, indices, books, refined);
        }

        return new VectorQuantizedWeight
        {
            Layout = layout, Indices = indices.MoveToOuterDisposeScope(),
            Codebooks = books.Select(b => b.MoveToOuterDisposeScope()).ToArray(), Precision = o.Precision,
        };
    }

    /// <summary>One codebook per row group of the column group, fitted on its d-vectors with per-dimension weights.</summary>
    internal static Tensor FitTiles(Tensor group, Tensor columnWeights, int rowGroups, int rowsPerGroup, int d, int k, GptvqOptions o)
    {
        using var scope = NewDisposeScope();
        long c = group.shape[1];
        var z = group.reshape(rowGroups, rowsPerGroup * c / d, d);
        var w = columnWeights.reshape(1, 1, c / d, d).expand(rowGroups, rowsPerGroup, c / d, d).reshape(rowGroups, -1, d);
        var (centroids, _) = WeightedKMeans.FitBatched(z, w, k, o.KMeans);
        return Codebook.RoundEach(centroids, o.Precision).MoveToOuterDisposeScope();
    }
}
