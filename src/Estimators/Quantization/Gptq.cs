using static TorchSharp.torch;

namespace Msavq.MLNet.Quantization;

/// <summary>Options of <see cref="Gptq"/>; defaults are the published reference's.</summary>
public sealed record GptqOptions
{
    public int Bits { get; init; } = 4;
    /// <summary>Columns per lazy-update block.</summary>
    public int BlockSize { get; init; } = 128;
    /// <summary>Damping as a fraction of mean(diag H).</summary>
    public double PercentDamping { get; init; } = 0.01;
    /// <summary>Columns per quantization group; ≤ 0 for one grid per row.</summary>
    public int GroupSize { get; init; } = -1;
    /// <summary>Process columns by decreasing diag(H).</summary>
    public bool ActOrder { get; init; }
    /// <summary>Fit every group's grid on the original W up front (lets act-order keep contiguous groups).</summary>
    public bool StaticGroups { get; init; }
    public bool Symmetric { get; init; }
}

/// <summary>
/// GPTQ (Frantar et al. 2023) exactly as the reference <c>fasterquant</c> (algorithm.md §2.3): dead inputs,
/// damping, optional act-order, U = chol(H⁻¹) upper, column sweep in lazy blocks, grids refit per group on the
/// compensated weights (or static). Works in the dtype of <c>w</c>; the factorization is float64.
/// </summary>
public static class Gptq
{
    public static ScalarQuantizedWeight Quantize(Tensor weight, Tensor hessian, GptqOptions o)
    {
        if (o.BlockSize < 1) throw new ArgumentOutOfRangeException(nameof(o), "BlockSize must be >= 1.");
        long m = weight.shape[0], n = weight.shape[1];
        if (hessian.shape[0] != n || hessian.shape[1] != n)
            throw new ArgumentException($"Hessian is {hessian.shape[0]}×{hessian.shape[1]}, expected {n}×{n}.");
        var (dtype, device) = (weight.dtype, weight.device);
        using var scope = NewDisposeScope();
        var W = weight.clone();
        MinMaxGrid? grid = o.GroupSize <= 0 ? MinMaxQuantizer.Fit(W, o.Bits, o.Symmetric) : null;

        var (H, Wd, _) = HessianFactor.HandleDeadInputs(hessian.to(ScalarType.Float64), W);
        W = Wd;
        int g = o.GroupSize <= 0 ? (int)n : o.GroupSize;
        int groups = (int)((n + g - 1) / g);
        var staticGrids = new MinMaxGrid[groups];
        if (o.GroupSize > 0 && o.StaticGroups)
            for (int k = 0; k < groups; k++)
                staticGrids[k] = MinMaxQuantizer.Fit(W[.., (k * g)..(int)Math.Min((long)(k + 1) * g, n)], o.Bits, o.Symmetric);

        long[]? perm = null;
        if (o.ActOrder)
        {
            var p = H.diagonal().argsort(descending: true);
            perm = p.cpu().data<long>().ToArray();
            W = W.index_select(1, p);
            H = H.index_select(0, p).index_select(1, p);
        }

        var L = HessianFactor.Cholesky(H, o.PercentDamping).Lower; // retries only if H is not positive definite
        var Hinv = HessianFactor.UpperInverseCholesky(L).to(dtype);
        W = W.to(dtype);

        var codes = zeros(m, n, dtype, device);          // in sweep order
        var scales = zeros(m, groups, dtype, device);
        var zerosT = zeros(m, groups, dtype, device);
        var groupOfSweepColumn = new int[n];
        if (o.GroupSize <= 0)
        {
            // One grid per row, fitted on the original W (as the reference): store it once, not per column.
            scales[.., 0] = grid!.Scale;
            zerosT[.., 0] = grid.Zero;
        }
        for (long i1 = 0; i1 < n; i1 += o.BlockSize)
        {
            long i2 = Math.Min(i1 + o.BlockSize, n), count = i2 - i1;
            var W1 = W[.., (int)i1..(int)i2].clone();
            var Err1 = zeros_like(W1);
            var Hinv1 = Hinv[(int)i1..(int)i2, (int)i1..(int)i2];
            for (long i = 0; i < count; i++)
            {
                long col = i1 + i;
                using var inner = NewDisposeScope();
                var w = W1[.., (int)i];
                var d = Hinv1[(int)i, (int)i];
                int group;
                if (o.GroupSize > 0 && !o.StaticGroups)
                {
                    group = (int)(col / g);
                    if (col % g == 0)
                    {
                        // As the reference: refit on W (lazy updates of earlier blocks applied, this block's not).
                        var fresh = MinMaxQuantizer.Fit(W[.., (int)col..(int)Math.Min(col + g, n)], o.Bits, o.Symmetric);
                        fresh.Scale.MoveToOuterDisposeScope(); fresh.Zero.MoveToOuterDisposeScope();
                        grid?.Scale.Dispose(); grid?.Zero.Dispose();
                        grid = fresh;
                        scales[.., group] = grid.Scale;
                        zerosT[.., group] = grid.Zero;
                    }
                }
                else if (o.GroupSize > 0)
                {
                    group = (int)((perm is null ? col : perm[col]) / g);
                    grid = staticGrids[group];
                    scales[.., group] = grid.Scale;
                    zerosT[.., group] = grid.Zero;
                }
                else group = 0;
                groupOfSweepColumn[col] = group;
                var code = grid!.Codes(w.unsqueeze(1));
                var q = grid.Dequantize(code).flatten();
                codes[.., (int)col] = code.flatten();
                var err = (w - q) / d;
                W1[.., (int)i..] -= err.unsqueeze(1).matmul(Hinv1[(int)i, (int)i..].unsqueeze(0));
                Err1[.., (int)i] = err;
            }
            if (i2 < n) W[.., (int)i2..] -= Err1.matmul(Hinv[(int)i1..(int)i2, (int)i2..]);
        }

        var groupOfColumn = new int[n];
        if (perm is not null)
        {
            var inv = tensor(perm, device: device).argsort();
            codes = codes.index_select(1, inv);
            for (long j = 0; j < n; j++) groupOfColumn[perm[j]] = groupOfSweepColumn[j];
        }
        else groupOfSweepColumn.CopyTo(groupOfColumn, 0);

        return new ScalarQuantizedWeight
        {
            Codes = codes.MoveToOuterDisposeScope(), Scales = scales.MoveToOuterDisposeScope(),
            Zeros = zerosT.MoveToOuterDisposeScope(), GroupOfColumn = groupOfColumn, Bits = o.Bits, GroupSize = g,
            Permutation = perm, ColumnMapStored = perm is not null && o.GroupSize > 0 && !o.StaticGroups,
        };
    }
}
