using Msavq.MLNet.Format;
using static TorchSharp.torch;

namespace Msavq.MLNet.Quantization;

/// <summary>
/// Tiling of a VQ weight: d-dimensional vectors along the input dimension; one codebook per tile of
/// <see cref="RowsPerGroup"/> rows × <see cref="ColumnsPerGroup"/> columns (GPTVQ §3.1 layout).
/// </summary>
public sealed record VqLayout(int VectorDim, int RowsPerGroup, int ColumnsPerGroup)
{
    public void Validate(long rows, long columns)
    {
        if (VectorDim < 1) throw new ArgumentException($"Vector dimension {VectorDim} must be >= 1.");
        if (columns % VectorDim != 0) throw new ArgumentException($"{columns} input columns are not a multiple of d = {VectorDim}.");
        if (ColumnsPerGroup % VectorDim != 0 || ColumnsPerGroup < VectorDim)
            throw new ArgumentException($"Columns per group ({ColumnsPerGroup}) must be a positive multiple of d = {VectorDim}.");
        if (columns % ColumnsPerGroup != 0) throw new ArgumentException($"{columns} columns are not a multiple of the group width {ColumnsPerGroup}.");
        if (RowsPerGroup < 1 || rows % RowsPerGroup != 0) throw new ArgumentException($"{rows} rows are not a multiple of {RowsPerGroup} rows per group.");
    }

    public int RowGroups(long rows) => (int)(rows / RowsPerGroup);
    public int ColumnGroups(long columns) => (int)(columns / ColumnsPerGroup);

    /// <summary>Tile layout for a target weight count per codebook (GPTVQ's groupsize S).</summary>
    public static VqLayout ForGroupSize(long rows, long columns, int vectorDim, int columnsPerGroup, long weightsPerCodebook)
    {
        int cols = (int)Math.Min(columnsPerGroup, columns);
        long r = Math.Clamp(weightsPerCodebook / cols, 1, rows);
        while (rows % r != 0) r--; // the largest divisor of rows not above the target
        return new VqLayout(vectorDim, (int)r, cols);
    }
}

/// <summary>A weight as indices into per-tile codebooks. Tile t = rowGroup · columnGroups + columnGroup.</summary>
public sealed class VectorQuantizedWeight : IDisposable
{
    public required VqLayout Layout { get; init; }
    /// <summary>[m, n/d] int64 codeword indices.</summary>
    public required Tensor Indices { get; init; }
    /// <summary>Per tile [K_t, d], already rounded to <see cref="Precision"/>.</summary>
    public required Tensor[] Codebooks { get; init; }
    public required CodebookPrecision Precision { get; init; }

    public long Rows => Indices.shape[0];
    public long Columns => Indices.shape[1] * Layout.VectorDim;

    public Tensor Dequantize()
    {
        using var scope = NewDisposeScope();
        int d = Layout.VectorDim, cg = Layout.ColumnGroups(Columns), vecs = Layout.ColumnsPerGroup / d;
        var w = empty(Rows, Columns, Codebooks[0].dtype, Indices.device);
        for (int rg = 0; rg < Layout.RowGroups(Rows); rg++)
            for (int c = 0; c < cg; c++)
            {
                var idx = Indices[(rg * Layout.RowsPerGroup)..((rg + 1) * Layout.RowsPerGroup), (c * vecs)..((c + 1) * vecs)];
                var tile = Codebooks[rg * cg + c].index_select(0, idx.reshape(-1)).reshape(Layout.RowsPerGroup, Layout.ColumnsPerGroup);
                w[(rg * Layout.RowsPerGroup)..((rg + 1) * Layout.RowsPerGroup), (c * Layout.ColumnsPerGroup)..((c + 1) * Layout.ColumnsPerGroup)] = tile;
            }
        return w.MoveToOuterDisposeScope();
    }

    /// <summary>All-in cost as stored (<see cref="BitCost.Vector"/>): codes, and every codebook at its precision.</summary>
    public BitCost Cost() => Precision == CodebookPrecision.Float32
        ? throw new NotSupportedException("Float32 codebooks are not storable, so they have no stored cost.")
        : BitCost.Vector(Rows, Columns, Layout.VectorDim, (long)Layout.RowsPerGroup * Layout.ColumnsPerGroup,
            Codebooks.Select(c => (int)c.shape[0]), Precision == CodebookPrecision.Int8);

    public void Dispose()
    {
        Indices.Dispose();
        foreach (var c in Codebooks) c.Dispose();
    }
}
