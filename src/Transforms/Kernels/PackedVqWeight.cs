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
        _columnOrder = layer.ColumnOrder?.ToArray();
        _rowScales = layer.RowScales?.Select(h => (float)h).ToArray();
        int tiles = RowGroups * ColumnGroups;
        _k = new int[tiles]; _layout = new TileCodes[tiles]; _stride = new int[tiles];
        _codebookOffset = new int[tiles]; _codeOffset = new long[tiles];
        int books = 0; long codes = 0;
        // Tile order in memory: column group outer, row group inner (see the class remarks).
        foreach (int t in TileVisitOrder())
        {
            int k = layer.CodebookSizes[t];
            _k[t] = k;
            _layout[t] = k <= 16 && RowsPerGroup % BlockRows == 0 && Positions % 2 == 0 ? TileCodes.Nibbles : TileCodes.Bytes;
            // Table and codebook rows padded with zeros: 16 for the shuffle, else a multiple of 8 for 256-bit vectors.
            _stride[t] = _layout[t] == TileCodes.Nibbles ? 16 : (k + 7) / 8 * 8;
            _codebookOffset[t] = books; books += _stride[t] * D;
            _codeOffset[t] = codes; codes += _layout[t] == TileCodes.Nibbles ? (long)RowsPerGroup * Positions / 2 : (long)RowsPerGroup * Positions;
        }
        _codebooks = new float[books];
        _codes = new byte[codes];
        int vecs = Columns / D;
        for (int t = 0; t < tiles; t++)
        {
            float[] book = layer.Codebook(t);
            for (int k = 0; k < _k[t]; k++)
                for (int e = 0; e < D; e++) _codebooks[_codebookOffset[t] + e * _stride[t] + k] = book[k * D + e];
            int rg = t / ColumnGroups, cg = t % ColumnGroups;
            var dst = _codes.AsSpan((int)_codeOffset[t]);
            for (int r = 0; r < RowsPerGroup; r++)
            {
                long src = (long)(rg * RowsPerGroup + r) * vecs + cg * Positions;
                for (int p = 0; p < Positions; p++)
                {
                    byte code = (byte)layer.Codes[src + p];   // < K ≤ 256: checked by Validate
                    if (_layout[t] == TileCodes.Bytes) dst[ByteIndex(r, p)] = code;
                    else
                    {
                        dst[NibbleIndex(r, p)] |= (byte)(p % 2 == 0 ? code : code << 4);
                    }
                }
            }
        }
    }

    /// <summary>
    /// Repacks a stored vector-quantized layer; every codebook must hold at most <see cref="MaxLookupCodebook"/>
    /// codewords. The layer is checked whole first — layout, array lengths, every code below its tile's K, finite
    /// codebooks and scales, a column order that is a permutation — because the kernels index tables by the codes
    /// with pointers: a code at or past K would read outside its table.
    /// </summary>
    /// <exception cref="NotSupportedException">A scalar layer, or a codebook larger than <see cref="MaxLookupCodebook"/>.</exception>
    /// <exception cref="ArgumentException">The layer is inconsistent (the message names it and what is wrong).</exception>
    public static PackedVqWeight From(QuantizedLayer layer)
    {
        ArgumentNullException.ThrowIfNull(layer);
        if (!Supports(layer, out string why)) throw new NotSupportedException($"Layer '{layer.Name}': {why}");
        Validate(layer);
        return new PackedVqWeight(layer);
    }

    private static void Validate(QuantizedLayer l)
    {
        ArgumentException Bad(string why) => new($"Layer '{l.Name}': {why}", "layer");
        if (l.Rows < 1 || l.Columns < 1) throw Bad($"shape {l.Rows}×{l.Columns}.");
        int d = l.VectorDim, r = l.RowsPerGroup, c = l.ColumnsPerGroup;
        if (d < 1 || r < 1 || c < d || c % d != 0 || l.Columns % c != 0 || l.Rows % r != 0)
            throw Bad($"layout d={d}, {r}×{c} tiles does not fit {l.Rows}×{l.Columns}.");
        int tiles = l.Rows / r * (l.Columns / c);
        var ks = l.CodebookSizes ?? Array.Empty<int>();
        if (ks.Length != tiles) throw Bad($"{ks.Length} codebook sizes for {tiles} tiles.");
        for (int t = 0; t < tiles; t++)
            if (ks[t] < 1 || ks[t] > MaxLookupCodebook) throw Bad($"tile {t} has K = {ks[t]}; 1 … {MaxLookupCodebook} expected.");
        if (l.Int8Codebooks)
        {
            if (l.CodebookValues is null || l.CodebookValues.Length != tiles) throw Bad($"{l.CodebookValues?.Length ?? 0} int8 codebooks for {tiles} tiles.");
            if (l.CodebookScales is null || l.CodebookScales.Length != tiles) throw Bad($"{l.CodebookScales?.Length ?? 0} codebook scales for {tiles} tiles.");
            for (int t = 0; t < tiles; t++)
            {
                if (l.CodebookValues![t] is not { } book || book.Length != ks[t] * d) throw Bad($"tile {t}'s codebook holds {l.CodebookValues[t]?.Length ?? 0} values, K·d = {ks[t] * d} expected.");
                if (!Half.IsFinite(l.CodebookScales![t])) throw Bad($"tile {t}'s codebook scale is {l.CodebookScales[t]}.");
            }
        }
        else
        {
            if (l.CodebookHalves is null || l.CodebookHalves.Length != tiles) throw Bad($"{l.CodebookHalves?.Length ?? 0} fp16 codebooks for {tiles} tiles.");
            for (int t = 0; t < tiles; t++)
            {
                if (l.CodebookHalves![t] is not { } book || book.Length != ks[t] * d) throw Bad($"tile {t}'s codebook holds {l.CodebookHalves[t]?.Length ?? 0} values, K·d = {ks[t] * d} expected.");
                if (Array.FindIndex(book, v => !Half.IsFinite(v)) is var at and >= 0) throw Bad($"tile {t}'s codeword value {at} is {book[at]}.");
            }
        }
        long vecs = l.Columns / d;
        if (l.Codes is null || l.Codes.LongLength != l.Rows * vecs) throw Bad($"{l.Codes?.LongLength ?? 0} codes; {l.Rows}×{vecs} expected.");
        int cg = l.Columns / c, vpg = c / d;
        for (long i = 0; i < l.Codes!.LongLength; i++)
        {
            long row = i / vecs, v = i % vecs;
            int t = (int)(row / r * cg + v / vpg), code = l.Codes[i];
            if (code < 0 || code >= ks[t]) throw Bad($"code {code} at row {row}, vector {v} is out of range for tile {t}'s {ks[t]} codewords.");
        }
        if (l.ColumnOrder is { } order)
        {
            var seen = new bool[l.Columns];
            if (order.Length != l.Columns) throw Bad($"a column order of {order.Length} entries for {l.Columns} columns.");
            foreach (int j in order)
            {
                if (j < 0 || j >= l.Columns || seen[j]) throw Bad("the column order is not a permutation of the columns.");
                seen[j] = true;
            }
        }
        if (l.RowScales is { } rs)
        {
            if (rs.Length != l.Rows) throw Bad($"{rs.Length} row scales for {l.Rows} rows.");
            if (Array.FindIndex(rs, v => !Half.IsFinite(v)) is var at and >= 0) throw Bad($"row scale {at} is {rs[at]}.");
        }
    }

    /// <summary>Whether the look-up kernels can run this layer (vector kind, K ≤ 256 in every tile).</summary>
    public static bool Supports(QuantizedLayer layer, out string why)
    {
        why = layer.Kind != QuantizedKind.Vector ? "scalar-quantized layers run through the dequantized path."
            : layer.CodebookSizes?.Any(k => k > MaxLookupCodebook) == true ? $"a codebook has more than {MaxLookupCodebook} codewords."
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
    // The packed arrays are the kernels' (same assembly) and never change after construction: the pointer loops rely
    // on the invariants Validate established. Callers get read-only views.
    internal readonly int[] _k, _stride, _codebookOffset;
    internal readonly TileCodes[] _layout;
    internal readonly int[]? _columnOrder;
    internal readonly float[]? _rowScales;
    internal readonly float[] _codebooks;
    internal readonly byte[] _codes;
    internal readonly long[] _codeOffset;

    /// <summary>Per tile: K, its number of codewords.</summary>
    public IReadOnlyList<int> K => Array.AsReadOnly(_k);
    /// <summary>Per tile: the padded row length of its codebook components and look-up tables (16, or K rounded up to 8).</summary>
    public IReadOnlyList<int> Stride => Array.AsReadOnly(_stride);
    public IReadOnlyList<TileCodes> Layout => Array.AsReadOnly(_layout);
    public IReadOnlyList<int>? ColumnOrder => _columnOrder is null ? null : Array.AsReadOnly(_columnOrder);
    public IReadOnlyList<float>? RowScales => _rowScales is null ? null : Array.AsReadOnly(_rowScales);
    /// <summary>Per tile: codewords as float32, [d][Stride] (component-major, zero-padded).</summary>
    public ReadOnlySpan<float> Codebooks => _codebooks;
    public IReadOnlyList<int> CodebookOffset => Array.AsReadOnly(_codebookOffset);
    /// <summary>The packed codes, tile after tile in <see cref="TileVisitOrder"/> (<see cref="TileCodes"/> layouts).</summary>
    public ReadOnlySpan<byte> Codes => _codes;
    public IReadOnlyList<long> CodeOffset => Array.AsReadOnly(_codeOffset);

    /// <summary>Bytes the kernel streams per product: codes and codebooks (what "GB/s of code traffic" counts).</summary>
    public long StreamedBytes => _codes.LongLength + _codebooks.LongLength * sizeof(float);

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
        if ((uint)tile >= (uint)_k.Length || (uint)r >= (uint)RowsPerGroup || (uint)p >= (uint)Positions)
            throw new ArgumentOutOfRangeException(nameof(tile), $"({tile}, {r}, {p}) is outside {_k.Length} tiles of {RowsPerGroup}×{Positions}.");
        long o = _codeOffset[tile];
        if (_layout[tile] == TileCodes.Bytes) return _codes[o + ByteIndex(r, p)];
        byte b = _codes[o + NibbleIndex(r, p)];
        return p % 2 == 0 ? b & 0x0F : b >> 4;
    }

    /// <summary>
    /// Rows [<paramref name="start"/>, start + count) of the decoded weight (row scales and column order applied),
    /// row-major into <paramref name="w"/> — the large-batch path multiplies by these a slab at a time.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)] // decoding runs per large-batch call: skip tier-0 code
    public unsafe void DequantizeRows(int start, int count, Span<float> w)
    {
        if (start < 0 || count < 0 || (long)start + count > Rows) throw new ArgumentOutOfRangeException(nameof(count));
        if (w.Length < (long)count * Columns) throw new ArgumentException("Destination too small.", nameof(w));
        var row = new float[Columns];
        var codes = new int[Positions];
        fixed (float* books = _codebooks)
            for (int i = 0; i < count; i++)
            {
                int at = start + i, rg = at / RowsPerGroup, r = at % RowsPerGroup;
                // Decode in code order (permuted columns), then place the columns.
                for (int cg = 0; cg < ColumnGroups; cg++)
                {
                    int t = rg * ColumnGroups + cg, s = _stride[t];
                    TileRowCodes(t, r, codes);
                    float* book = books + _codebookOffset[t];
                    int j0 = cg * ColumnsPerGroup;
                    for (int p = 0; p < Positions; p++)
                        for (int e = 0; e < D; e++) row[j0 + p * D + e] = book[e * s + codes[p]];
                }
                var dst = w.Slice(i * Columns, Columns);
                float scale = _rowScales?[at] ?? 1f;
                if (_columnOrder is { } order)
                    for (int j = 0; j < Columns; j++) dst[order[j]] = row[j] * scale;
                else
                    for (int j = 0; j < Columns; j++) dst[j] = row[j] * scale;
            }
    }

    // The indices of one row of a tile, in position order.
    private void TileRowCodes(int tile, int r, int[] codes)
    {
        long o = _codeOffset[tile];
        if (_layout[tile] == TileCodes.Bytes)
        {
            for (int p = 0; p < Positions; p++) codes[p] = _codes[o + ByteIndex(r, p)];
            return;
        }
        for (int q = 0; q < Positions / 2; q++)
        {
            byte b = _codes[o + NibbleIndex(r, 2 * q)];
            codes[2 * q] = b & 0x0F;
            codes[2 * q + 1] = b >> 4;
        }
    }
}
