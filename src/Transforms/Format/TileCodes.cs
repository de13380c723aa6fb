namespace Msavq.MLNet.Format;

/// <summary>
/// A vector-quantized layer's codes as the file stores them (docs/quantized-format.md): tile by tile in row-major tile
/// order, each tile's codes row by row, packed at ⌈log2 K_t⌉ bits (<see cref="BitCost.CodeBits"/>) with
/// <see cref="BitPacking"/> — so each tile's bytes are exactly what the bit accounting counts for it.
/// </summary>
internal static class TileCodes
{
    public static byte[] Pack(QuantizedLayer l)
    {
        int vecs = l.Columns / l.VectorDim, vpg = l.ColumnsPerGroup / l.VectorDim, cg = l.ColumnGroups;
        var parts = new List<byte[]>();
        for (int t = 0; t < l.CodebookSizes.Length; t++)
        {
            int rg = t / cg, c = t % cg;
            var codes = new int[l.RowsPerGroup * vpg];
            for (int i = 0; i < l.RowsPerGroup; i++)
                for (int v = 0; v < vpg; v++) codes[i * vpg + v] = l.Codes[(long)(rg * l.RowsPerGroup + i) * vecs + c * vpg + v];
            parts.Add(BitPacking.Pack(codes, BitCost.CodeBits(l.CodebookSizes[t])));
        }
        return parts.SelectMany(x => x).ToArray();
    }

    public static int[] Unpack(byte[] data, int rows, int cols, int d, int r, int c, int[] sizes, string name,
                                     Func<string, MsavqFormatException> bad)
    {
        int vecs = cols / d, vpg = c / d, cg = cols / c;
        long expected = sizes.Sum(k => BitPacking.PackedBytes((long)r * vpg, BitCost.CodeBits(k)));
        if (data.Length != expected) throw bad($"layer '{name}': codes have {data.Length} bytes, the layout needs {expected}");
        var codes = new int[(long)rows * vecs];
        int at = 0;
        for (int t = 0; t < sizes.Length; t++)
        {
            int bytes = (int)BitPacking.PackedBytes((long)r * vpg, BitCost.CodeBits(sizes[t]));
            var tile = BitPacking.Unpack(data.AsSpan(at, bytes), (long)r * vpg, BitCost.CodeBits(sizes[t]));
            at += bytes;
            if (tile.Any(x => x >= sizes[t])) throw bad($"layer '{name}': a code of tile {t} is out of range for its {sizes[t]} codewords");
            int rg = t / cg, cc = t % cg;
            for (int i = 0; i < r; i++)
                for (int v = 0; v < vpg; v++) codes[(long)(rg * r + i) * vecs + cc * vpg + v] = tile[i * vpg + v];
        }
        return codes;
    }
}
