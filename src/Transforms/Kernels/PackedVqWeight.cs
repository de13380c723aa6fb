using System.Runtime.CompilerServices;
using Msavq.MLNet.Format;

namespace Msavq.MLNet.Kernels;

/// <summary>How the codes of one tile are laid out in memory for the look-up kernels.</summary>
public enum TileCodes : byte
{
    /// <summary>K ≤ 16: two 4-bit indices per byte; per block of 32 rows and pair of positions (2q, 2q+1), 32 bytes —
    /// byte r holds row r's index at position 2q in its low nibble and at 2q+1 in its high nibble.</summary>
    Nibbles,
    /// <summary>16 &lt; K ≤ 256 (or a tile the nibble layout cannot hold): one byte per index; per block of
    /// <see cref="PackedVqWeight.ByteBlockRows"/> rows and position p, that many bytes (one per row) — 8 rows feed one
    /// AVX2 gather.</summary>
    Bytes,
}

/// <summary>
/// A vector-quantized weight repacked at load for the look-up kernels (<see cref="LutKernel"/>): the file layout
/// (docs/quantized-format.md) packs indices at ⌈log2 K⌉ bits for size; here each tile gets the layout its kernel
/// streams — 4-bit nibbles interleaved for 32-row SIMD blocks, or bytes — and tiles are stored column group by
/// column group, so a thread that owns a range of input columns reads one contiguous stretch of memory.
/// Codebooks are kept as float32, component-major ([d][K], padded) so building a look-up table is d vector multiply-adds.
/// </summary>
public sealed class PackedVqWeight
{
    /// <summary>Largest codebook the look-up kernels take; bigger ones cost more to tabulate than to decode.</summary>
    public const int MaxLookupCodebook = 256;
    internal const int BlockRows = 32;

    private PackedVqWeight(QuantizedLayer layer)
    {
        Name = layer.Name;
        Rows = layer.Rows; Columns = layer.Columns; D = layer.VectorDim;
        RowsPerGroup = layer.RowsPerGroup; ColumnsPerGroup = layer.ColumnsPerGroup;
        RowGroups = layer.RowGroups; ColumnGroups = layer.ColumnGroups;
        Positions = ColumnsPerGroup / D;
        ByteBlockRows = RowsPerGroup % 8 == 0 ? 8 : 1;
        ColumnOrder = layer.ColumnOrder;
        RowScales = layer.RowScales?.Select(h => (float)h).ToArray();
        int tiles = RowGroups * ColumnGroups;
        K = new int[tiles]; Layout = new TileCodes[tiles]; Stride = new int[tiles];
        CodebookOffset = new int[tiles]; CodeOffset = new long[tiles];
        int books = 0; long codes = 0;
        // Tile order in memory: column group outer, row group inner (see the class remarks).
        foreach (int t in TileVisitOrder())
        {
            int k = layer.CodebookSizes[t];
            K[t] = k;
            Layout[t] = k <= 16 && RowsPerGroup % BlockRows == 0 && Positions % 2 == 0 ? TileCodes.Nibbles : TileCodes.Bytes;
            // Table and codebook rows padded with zeros: 16 for the shuffle, else a multiple of 8 for 256-bit vectors.
            Stride[t] = Layout[t] == TileCodes.Nibbles ? 16 : (k + 7) / 8 * 8;
            CodebookOffset[t] = books; books += Stride[t] * D;
            CodeOffset[t] = codes; codes += Layout[t] == TileCodes.Nibbles ? (long)RowsPerGroup * Positions / 2 : (long)RowsPerGroup * Positions;
        }
        Codebooks = new float[books];
        Codes = new byte[codes];
        int vecs = Columns / D;
        for (int t = 0; t < tiles; t++)
        {
            float[] book = layer.Codebook(t);
            for (int k = 0; k < K[t]; k++)
                for (int e = 0; e < D; e++) Codebooks[CodebookOffset[t] + e * Stride[t] + k] = book[k * D + e];
            int rg = t / ColumnGroups, cg = t % ColumnGroups;
            var dst = Codes.AsSpan((int)CodeOffset[t]);
            for (int r = 0; r < RowsPerGroup; r++)
            {
                long src = (long)(rg * RowsPerGroup + r) * vecs + cg * Positions;
                for (int p = 0; p < Positions; p++)
                {
                    byte code = (byte)layer.Codes[src + p];
                    if (Layout[t] == TileCodes.Bytes) dst[ByteIndex(r, p)] = code;
                    else
                    {
                        dst[NibbleIndex(r, p)] |= (byte)(p % 2 == 0 ? code : code << 4);
                    }
                }
            }
        }
    }

    /// <summary>Repacks a stored vector-quantized layer; every codebook must hold at most <see cref="MaxLookupCodebook"/> codewords.</summary>
    public static PackedVqWeight From(QuantizedLayer layer)
    {
        ArgumentNullException.ThrowIfNull(layer);
        if (!Supports(layer, out string why)) throw new NotSupportedException($"Layer '{layer.Name}': {why}");
        return new PackedVqWeight(layer);
    }

    /// <summary>Whether the look-up kernels can run this layer (vector kind, K ≤ 256 in every tile).</summary>
    public static bool Supports(QuantizedLayer layer, out string why)
    {
        why = layer.Kind != QuantizedKind.Vector ? "scalar-quantized layers run through the dequantized path."
            : layer.CodebookSizes.Any(k => k > MaxLookupCodebook) ? $"a codebook has more than {MaxLookupCodebook} codewords."
            : "";
        return why.Length == 0;
    }

    public string Name { get; }
    public int Rows { get; }
    public int Columns { get; }
    public int D { get; }
    public int RowsPerGroup { get; }
    public int ColumnsPerGroup { get; }
    public int RowGroups { get; }
    public int ColumnGroups { get; }
    /// <summary>Vector positions per tile row, C/d.</summary>
    public int Positions { get; }
    /// <summary>Rows interleaved in the byte layout: 8 when the row group allows, else 1 (plain rows).</summary>
    public int ByteBlockRows { get; }
    public int[] K { get; }
    /// <summary>Per tile: the padded row length of its codebook components and look-up tables (16, or K rounded up to 8).</summary>
    public int[] Stride { get; }
    public TileCodes[] Layout { get; }
    public int[]? ColumnOrder { get; }
    public float[]? RowScales { get; }
    /// <summary>Per tile: codewords as float32, [d][Stride] (component-major, zero-padded).</summary>
    public float[] Codebooks { get; }
    public int[] CodebookOffset { get; }
    public byte[] Codes { get; }
    public long[] CodeOffset { get; }

    /// <summary>Bytes the kernel streams per product: codes and codebooks (what "GB/s of code traffic" counts).</summary>
    public long StreamedBytes => Codes.LongLength + Codebooks.LongLength * sizeof(float);

    /// <summary>Tiles in memory order: column group outer, row group inner.</summary>
    public IEnumerable<int> TileVisitOrder()
    {
        for (int cg = 0; cg < ColumnGroups; cg++)
            for (int rg = 0; rg < RowGroups; rg++) yield return rg * ColumnGroups + cg;
    }

    // Byte of (row r, position p) inside a tile, per layout (see TileCodes).
    private int NibbleIndex(int r, int p) => (r / BlockRows) * BlockRows * Positions / 2 + (p / 2) * BlockRows + r % BlockRows;
    private int ByteIndex(int r, int p) => (r / ByteBlockRows) * ByteBlockRows * Positions + p * ByteBlockRows + r % ByteBlockRows;

    /// <summary>The index of row <paramref name="r"/> (within the tile) at position <paramref name="p"/>.</summary>
    public int Code(int tile, int r, int p)
    {
        long o = CodeOffset[tile];
        if (Layout[tile] == TileCodes.Bytes) return Codes[o + ByteIndex(r, p)];
        byte b = Codes[o + NibbleIndex(r, p)];
        return p % 2 == 0 ? b & 0x0F : b >> 4;
    }

    /// <summary>
    /// Rows [<paramref name="start"/>, start + count) of the decoded weight (row scales and column order applied),
    /// row-major into <paramref name="w"/> — the large-batch path multiplies by these a slab at a time.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)] // decoding runs per large-batch call: skip tier-0 code
    public unsafe void DequantizeRows(int start, int count, Span<float> w)
    {
        if (start < 0 || count < 0 || start + count > Rows) throw new ArgumentOutOfRangeException(nameof(count));
        if (w.Length < count * Columns) throw new ArgumentException("Destination too small.", nameof(w));
        var row = new float[Columns];
        var codes = new int[Positions];
        fixed (float* books = Codebooks)
            for (int i = 0; i < count; i++)
            {
                int at = start + i, rg = at / RowsPerGroup, r = at % RowsPerGroup;
                // Decode in code order (permuted columns), then place the columns.
                for (int cg = 0; cg < ColumnGroups; cg++)
                {
                    int t = rg * ColumnGroups + cg, s = Stride[t];
                    TileRowCodes(t, r, codes);
                    float* book = books + CodebookOffset[t];
                    int j0 = cg * ColumnsPerGroup;
                    for (int p = 0; p < Positions; p++)
                        for (int e = 0; e < D; e++) row[j0 + p * D + e] = book[e * s + codes[p]];
                }
                var dst = w.Slice(i * Columns, Columns);
                float scale = RowScales?[at] ?? 1f;
                if (ColumnOrder is { } order)
                    for (int j = 0; j < Columns; j++) dst[order[j]] = row[j] * scale;
                else
                    for (int j = 0; j < Columns; j++) dst[j] = row[j] * scale;
            }
    }

    // The indices of one row of a tile, in position order.
    private void TileRowCodes(int tile, int r, int[] codes)
    {
        long o = CodeOffset[tile];
        if (Layout[tile] == TileCodes.Bytes)
        {
            for (int p = 0; p < Positions; p++) codes[p] = Codes[o + ByteIndex(r, p)];
            return;
        }
        for (int q = 0; q < Positions / 2; q++)
        {
            byte b = Codes[o + NibbleIndex(r, 2 * q)];
            codes[2 * q] = b & 0x0F;
            codes[2 * q + 1] = b >> 4;
        }
    }
}
