using TorchSharp;
using static TorchSharp.torch;

namespace Msavq.MLNet.Quantization;

/// <summary>Options of <see cref="BlockLdlq"/>.</summary>
public sealed record BlockLdlqOptions
{
    public VqLayout? Layout { get; init; }
    /// <summary>Codebook size per tile (the same for every tile of the layer here; mixed precision sets it per tile).</summary>
    public int CodebookSize { get; init; } = 16;
    /// <summary>Optional per-tile codebook sizes (row-major tiles); overrides <see cref="CodebookSize"/>.</summary>
    public int[]? TileCodebookSizes { get; init; }
    /// <summary>λ relative to mean(diag A) before the LDL (§8.2, A_n).</summary>
    public double RelativeDamping { get; init; } = 0.01;
    public KMeansOptions KMeans { get; init; } = new();
    public CodebookPrecision Precision { get; init; } = CodebookPrecision.Int8;
    /// <summary>Closed-form D_k-weighted codebook update on the sweep's targets, assignments fixed (§8.4 step 9).</summary>
    public bool RefineCodebooks { get; init; } = true;
    /// <summary>
    /// Pick codewords by plain Euclidean distance instead of the D_k-weighted one (QuIP#'s rule after incoherence
    /// processing; the identities of §5.1 hold for any fixed rule).
    /// </summary>
    public bool EuclideanAssignment { get; init; }
    /// <summary>Lloyd iterations under the full D_k metric after the diagonal k-means (0: the diagonal fit alone).</summary>
    public int FullMetricIterations { get; init; } = 10;
    /// <summary>
    /// Sweep the columns first to last (GPTQ's and GPTVQ's order) instead of LDLQ's last to first. Both are exact
    /// sequential block-OBS; which columns absorb the others' errors is what differs (§8.4 "forward-order alternative").
    /// </summary>
    public bool Forward { get; init; }
    /// <summary>Use this codebook [K, d] for every tile instead of fitting one (no refinement); for analysis and tests.</summary>
    public Tensor? FixedCodebook { get; init; }
}

/// <summary>
/// BlockLDLQ vector quantization (algorithm.md §8.4 steps 2–9): A = L D Lᵀ with d×d blocks; blocks processed in
/// reverse; target T_k = W*_k + (W* − Ŵ)_{>k}·(L − I)_{>k,k}; codeword = D_k-weighted nearest in the tile's codebook;
/// each codebook fitted when the sweep enters its tile, on the current targets (k-means weighted by b_i·diag D_k).
/// With exact feedback this is exact block-OBS in reverse block order (§5.1, check 4b).
/// </summary>
public static class BlockLdlq
{
    /// <param name="target">W* [m, n] (W itself, or the gradient-shifted target).</param>
    /// <param name="a">Input factor A [n, n].</param>
    /// <param name="rowWeights">b [m] (output factor diagonal), or null.</param>
    public static VectorQuantizedWeight Quantize(Tensor target, Tensor a, Tensor? rowWeights, BlockLdlqOptions o)
    {
        if (o.Forward) return Forward(target, a, rowWeights, o);
        long m = target.shape[0], n = target.shape[1];
        var layout = o.Layout ?? new VqLayout(2, (int)m, (int)Math.Min(n, 256));
        layout.Validate(m, n);
        int d = layout.VectorDim, C = layout.ColumnsPerGroup, R = layout.RowsPerGroup;
        int rg = layout.RowGroups(m), cgN = layout.ColumnGroups(n);
        var sizes = o.TileCodebookSizes ?? Enumerable.Repeat(o.CodebookSize, rg * cgN).ToArray();
        if (sizes.Length != rg * cgN) throw new ArgumentException($"{sizes.Length} tile codebook sizes for {rg * cgN} tiles.");
        foreach (int k in sizes.Distinct()) CodebookLimits.Check(k, d);
        var (dtype, device) = (target.dtype, target.device);
        using var scope = NewDisposeScope();
        using var one = 1.ToScalar();   // explicit Scalars throughout (WeightedKMeans says why)

        var (H, Wstar, _) = HessianFactor.HandleDeadInputs(a.to(ScalarType.Float64), target);
        using var meanDiagonal = H.diagonal().mean().item<double>().ToScalar();
        var An = H.div(meanDiagonal);                                        // scale-free copy (§8.2)
        var ldl = BlockLdl.FromCholesky(HessianFactor.Cholesky(An, o.RelativeDamping).Lower, d);
        var Lm = (ldl.L - eye(n, dtype: ScalarType.Float64, device: ldl.L.device)).to(dtype);   // strictly block-lower part
        var D = ldl.D.to(dtype);                               // [n/d, d, d]
        var b = rowWeights?.to(dtype);

        var E = zeros(m, n, dtype, device);                                  // W* − Ŵ on quantized columns
        var T = o.RefineCodebooks && o.FixedCodebook is null ? zeros(m, n, dtype, device) : null;
        var indices = zeros(m, n / d, ScalarType.Int64, device);
        var books = new Tensor[rg * cgN];

        for (int cg = cgN - 1; cg >= 0; cg--)
        {
            using var groupScope = NewDisposeScope();   // per column group: targets, feedback, fitting
            int g0 = cg * C, g1 = g0 + C;
            // Feedback from every quantized group to the right, in one matmul (lazy, as GPTQ's blocks).
            var Z = Wstar[.., g0..g1].clone();
            if (g1 < n) Z = Z.add(E[.., g1..].matmul(Lm[g1.., g0..g1]), one);
            var Dg = D[(g0 / d)..(g1 / d)];
            var groupBooks = o.FixedCodebook is { } fixedBook
                ? Enumerable.Repeat(fixedBook.to(dtype), rg).ToList()
                : FitTiles(Z, Dg, b, layout, cg, sizes, cgN, o);
            for (int r = 0; r < rg; r++) books[r * cgN + cg] = groupBooks[r].clone().MoveToOuterDisposeScope();
            var Eg = zeros(m, C, dtype, device);
            for (int i = C - d; i >= 0; i -= d)
            {
                using var step = NewDisposeScope();
                var t = Z[.., i..(i + d)];
                if (i + d < C) t = t.add(Eg[.., (i + d)..].matmul(Lm[(g0 + i + d)..g1, (g0 + i)..(g0 + i + d)]), one);
                T?.index_put_(t, TensorIndex.Colon, TensorIndex.Slice(g0 + i, g0 + i + d));
                var metric = o.EuclideanAssignment ? eye(d, dtype: dtype, device: D.device) : D[(g0 + i) / d];
                var (idx, q) = Nearest(t, groupBooks, metric);
                indices[.., (g0 + i) / d] = idx;
                Eg[.., i..(i + d)] = Wstar[.., (g0 + i)..(g0 + i + d)] - q;
            }
            E[.., g0..g1] = Eg;
        }

        if (T is not null)
        {
            var refined = new Tensor[books.Length];
            for (int r = 0; r < rg; r++)
                for (int cg = 0; cg < cgN; cg++)
                {
                    int g0 = cg * C;
                    var rows = TensorIndex.Slice(r * R, (r + 1) * R);
                    var book = CodewordSearch.Refine(books[r * cgN + cg], T[rows, TensorIndex.Slice(g0, g0 + C)],
                        indices[rows, TensorIndex.Slice(g0 / d, (g0 + C) / d)], D[(g0 / d)..((g0 + C) / d)],
                        b?[rows]);
                    refined[r * cgN + cg] = Codebook.Round(book, o.Precision);
                }
            books = CodewordSearch.KeepIfBetter(Wstar, H, b, layout, indices, books, refined);
        }

        return new VectorQuantizedWeight
        {
            Layout = layout, Indices = indices.MoveToOuterDisposeScope(),
            Codebooks = books.Select(x => x.MoveToOuterDisposeScope()).ToArray(), Precision = o.Precision,
        };
    }

    /// <summary>
    /// The forward sweep as LDLQ on the column-reversed problem: reversed, the last column comes first. Tiles, vectors
    /// and the components of each codeword are mirrored back, so the result is laid out like any other.
    /// </summary>
    private static VectorQuantizedWeight Forward(Tensor target, Tensor a, Tensor? rowWeights, BlockLdlqOptions o)
    {
        long m = target.shape[0], n = target.shape[1];
        var layout = o.Layout ?? new VqLayout(2, (int)m, (int)Math.Min(n, 256));
        layout.Validate(m, n);
        int rg = layout.RowGroups(m), cgN = layout.ColumnGroups(n);
        using var scope = NewDisposeScope();
        var flip = Descending(n, target.device);
        int[]? sizes = o.TileCodebookSizes is { } s
            ? Enumerable.Range(0, rg * cgN).Select(t => s[t / cgN * cgN + cgN - 1 - t % cgN]).ToArray()
            : null;
        using var mirrored = Quantize(target.index_select(1, flip), a.index_select(0, flip).index_select(1, flip), rowWeights,
            o with { Forward = false, Layout = layout, TileCodebookSizes = sizes });
        var vectors = Descending(n / layout.VectorDim, target.device);
        var books = Enumerable.Range(0, rg * cgN)
            .Select(t => mirrored.Codebooks[t / cgN * cgN + cgN - 1 - t % cgN].flip(1).MoveToOuterDisposeScope()).ToArray();
        return new VectorQuantizedWeight
        {
            Layout = layout, Indices = mirrored.Indices.index_select(1, vectors).MoveToOuterDisposeScope(), Codebooks = books,
            Precision = mirrored.Precision,
        };
    }

    /// <summary>n − 1, …, 0 as int64 on <paramref name="device"/> (built here: <c>arange</c> takes implicit Scalars).</summary>
    private static Tensor Descending(long n, Device device) =>
        tensor(Enumerable.Range(0, (int)n).Select(j => n - 1 - j).ToArray(), device: device);

    /// <summary>
    /// One codebook per row group of the column group (§8.4 step 6): weighted k-means with the diagonal of each
    /// vector's D_k, then Lloyd iterations under the full D_k metric the sweep assigns with (E-step: D_k-weighted
    /// nearest codeword; M-step: c = (Σ M_p)⁻¹ Σ M_p z_p), so the codebook fits the cost it is used for — with
    /// correlated inputs the diagonal alone weighs each dimension as if the other were free.
    /// </summary>
    private static IReadOnlyList<Tensor> FitTiles(Tensor z, Tensor dGroup, Tensor? b, VqLayout layout, int cg, int[] sizes,
                                                 int cgN, BlockLdlqOptions o)
    {
        int d = layout.VectorDim, R = layout.RowsPerGroup, C = layout.ColumnsPerGroup;
        var diagD = dGroup.diagonal(0, 1, 2);                               // [C/d, d]
        int rowGroups = layout.RowGroups(z.shape[0]);
        var tileSizes = Enumerable.Range(0, rowGroups).Select(r => sizes[r * cgN + cg]).ToArray();
        List<Tensor> books;
        if (tileSizes.All(s => s == tileSizes[0]))
        {
            using var batchScope = NewDisposeScope();
            var pts = z.reshape(rowGroups, R * C / d, d);
            var w = diagD.reshape(1, 1, C / d, d).expand(rowGroups, R, C / d, d);
            if (b is not null) w = w * b.reshape(rowGroups, R, 1, 1);
            var (c, _) = WeightedKMeans.FitBatched(pts, w.reshape(rowGroups, -1, d), tileSizes[0], o.KMeans);
            books = Enumerable.Range(0, rowGroups).Select(r => c[r].MoveToOuterDisposeScope()).ToList();
        }
        else
        {
            books = new List<Tensor>();
            for (int r = 0; r < rowGroups; r++)
            {
                using var scope = NewDisposeScope();
                var pts = z[(r * R)..((r + 1) * R)].reshape(-1, d);
                var w = diagD.unsqueeze(0).expand(R, C / d, d);
                if (b is not null) w = w * b[(r * R)..((r + 1) * R)].reshape(R, 1, 1);
                var (c, _) = WeightedKMeans.Fit(pts, w.reshape(-1, d), sizes[r * cgN + cg], o.KMeans);
                books.Add(c.MoveToOuterDisposeScope());
            }
        }
        for (int it = 0; it < o.FullMetricIterations && d > 1; it++)
        {
            using var scope = NewDisposeScope();
            var idx = stack(Enumerable.Range(0, C / d).Select(v => Nearest(z[.., (v * d)..(v * d + d)], books, dGroup[v]).Indices).ToList(), 1);
            var next = Enumerable.Range(0, rowGroups).Select(r => CodewordSearch.Refine(books[r], z[(r * R)..((r + 1) * R)],
                idx[(r * R)..((r + 1) * R)], dGroup, b?[(r * R)..((r + 1) * R)]).MoveToOuterDisposeScope()).ToList();
            foreach (var old in books) old.Dispose();
            books = next;
        }
        var rounded = books.Select(c => Codebook.Round(c, o.Precision)).ToList();
        foreach (var c in books) c.Dispose();
        return rounded;
    }

    /// <summary>D_k-weighted nearest codeword per row; row groups may have codebooks of different sizes.</summary>
    private static (Tensor Indices, Tensor Codewords) Nearest(Tensor t, IReadOnlyList<Tensor> books, Tensor metric)
    {
        if (books.All(x => x.shape[0] == books[0].shape[0]))
            return CodewordSearch.Nearest(t, stack(books), metric);
        long rows = t.shape[0] / books.Count;
        var parts = books.Select((book, r) =>
            CodewordSearch.Nearest(t[(int)(r * rows)..(int)((r + 1) * rows)], book.unsqueeze(0), metric)).ToList();
        return (cat(parts.Select(p => p.Indices).ToList(), 0), cat(parts.Select(p => p.Codewords).ToList(), 0));
    }
}
