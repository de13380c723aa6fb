namespace Msavq.MLNet.Format;

/// <summary>How a layer's codes are stored.</summary>
public enum QuantizedKind { Vector, Scalar }

/// <summary>
/// One quantized Linear weight exactly as stored (docs/quantized-format.md), independent of TorchSharp:
/// VQ — d-vectors along the input dimension, tiles of RowsPerGroup × ColumnsPerGroup with one codebook each
/// (int8 with an fp16 scale, or fp16); scalar — codes with an fp16 scale and a zero per (row, group).
/// <see cref="Dequantize"/> is the weight the network runs with, before and after a save.
/// </summary>
public sealed class QuantizedLayer
{
    public required string Name { get; init; }
    public required int Rows { get; init; }
    public required int Columns { get; init; }
    public required QuantizedKind Kind { get; init; }

    // Vector quantization.
    public int VectorDim { get; init; }
    public int RowsPerGroup { get; init; }
    public int ColumnsPerGroup { get; init; }
    /// <summary>K per tile, row-major tiles.</summary>
    public int[] CodebookSizes { get; init; } = Array.Empty<int>();
    /// <summary>Per tile: int8 codewords [K·d] (when <see cref="Int8Codebooks"/>).</summary>
    public sbyte[][] CodebookValues { get; init; } = Array.Empty<sbyte[]>();
    /// <summary>Per tile: the int8 scale (fp16 value).</summary>
    public Half[] CodebookScales { get; init; } = Array.Empty<Half>();
    /// <summary>Per tile: fp16 codewords [K·d] (when not <see cref="Int8Codebooks"/>).</summary>
    public Half[][] CodebookHalves { get; init; } = Array.Empty<Half[]>();
    public bool Int8Codebooks { get; init; } = true;
    /// <summary>Input-column order the codes are in (column j of the codes is column ColumnOrder[j] of W); null = natural.</summary>
    public int[]? ColumnOrder { get; init; }
    /// <summary>fp16 scale per output row, or null.</summary>
    public Half[]? RowScales { get; init; }

    // Scalar quantization.
    public int Bits { get; init; }
    public int GroupSize { get; init; }
    /// <summary>Group of each input column; null = column / GroupSize.</summary>
    public int[]? GroupOfColumn { get; init; }
    /// <summary>[Rows · groups] fp16 scales and integer zeros.</summary>
    public Half[] Scales { get; init; } = Array.Empty<Half>();
    public int[] Zeros { get; init; } = Array.Empty<int>();

    /// <summary>VQ: [Rows · Columns/d] codeword indices; scalar: [Rows · Columns] codes.</summary>
    public required int[] Codes { get; init; }

    public int Groups => Kind == QuantizedKind.Scalar ? (GroupOfColumn?.Max() + 1 ?? (Columns + GroupSize - 1) / GroupSize) : 0;
    public int RowGroups => Rows / RowsPerGroup;
    public int ColumnGroups => Columns / ColumnsPerGroup;

    /// <summary>The weight [Rows · Columns], row-major, float32.</summary>
    public float[] Dequantize()
    {
        var w = new float[(long)Rows * Columns];
        if (Kind == QuantizedKind.Scalar)
        {
            int groups = Groups;
            for (int i = 0; i < Rows; i++)
                for (int j = 0; j < Columns; j++)
                {
                    int g = GroupOfColumn?[j] ?? j / GroupSize;
                    float scale = (float)Scales[i * groups + g];
                    w[(long)i * Columns + j] = scale * (Codes[(long)i * Columns + j] - Zeros[i * groups + g]);
                }
            return w;
        }
        int d = VectorDim, vecs = Columns / d, cg = ColumnGroups;
        var books = Enumerable.Range(0, CodebookSizes.Length).Select(Codebook).ToArray();
        var permuted = ColumnOrder is null ? w : new float[w.Length];
        for (int i = 0; i < Rows; i++)
        {
            int rg = i / RowsPerGroup;
            for (int v = 0; v < vecs; v++)
            {
                int tile = rg * cg + v * d / ColumnsPerGroup;
                int code = Codes[(long)i * vecs + v];
                for (int k = 0; k < d; k++) permuted[(long)i * Columns + v * d + k] = books[tile][code * d + k];
            }
        }
        if (ColumnOrder is { } order)
            for (int i = 0; i < Rows; i++)
                for (int j = 0; j < Columns; j++) w[(long)i * Columns + order[j]] = permuted[(long)i * Columns + j];
        if (RowScales is { } rs)
            for (int i = 0; i < Rows; i++)
            {
                float s = (float)rs[i];
                for (int j = 0; j < Columns; j++) w[(long)i * Columns + j] *= s;
            }
        return w;
    }

    /// <summary>Codewords of one tile as float32 [K·d] — int8 × scale computed in float32, as the quantizer rounds them.</summary>
    public float[] Codebook(int tile)
    {
        if (!Int8Codebooks) return CodebookHalves[tile].Select(h => (float)h).ToArray();
        float scale = (float)CodebookScales[tile];
        return CodebookValues[tile].Select(q => q * scale).ToArray();
    }

    /// <summary>The same layer with other codebooks (and row scales): the codes, layout and order are kept.</summary>
    public QuantizedLayer WithCodebooks(sbyte[][] values, Half[] scales, Half[][] halves, Half[]? rowScales) => new()
    {
        Name = Name, Rows = Rows, Columns = Columns, Kind = Kind, VectorDim = VectorDim, RowsPerGroup = RowsPerGroup,
        ColumnsPerGroup = ColumnsPerGroup, CodebookSizes = CodebookSizes, Int8Codebooks = Int8Codebooks, CodebookValues = values,
        CodebookScales = scales, CodebookHalves = halves, ColumnOrder = ColumnOrder, RowScales = rowScales, Codes = Codes,
    };

    /// <summary>All-in cost of the layer as stored (<see cref="BitCost"/>: codes at their packed width, codebooks, scales, zeros, maps).</summary>
    public BitCost Cost()
    {
        var cost = Kind == QuantizedKind.Scalar
            ? BitCost.Scalar(Rows, Columns, Bits, Groups, GroupOfColumn is not null)
            : BitCost.Vector(Rows, Columns, VectorDim, (long)RowsPerGroup * ColumnsPerGroup, CodebookSizes, Int8Codebooks);
        return cost with
        {
            ScaleBits = cost.ScaleBits + (RowScales is null ? 0 : BitCost.RowScales(Rows)),
            PermutationBits = cost.PermutationBits + (ColumnOrder is null ? 0 : BitCost.ColumnMap(Columns)),
        };
    }
}
