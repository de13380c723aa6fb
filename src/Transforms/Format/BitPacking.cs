namespace Msavq.MLNet.Format;

/// <summary>Codes packed at exactly <c>bits</c> bits each, little-endian bit order (code i starts at bit i·bits).</summary>
public static class BitPacking
{
    public static long PackedBytes(long count, int bits) => (count * bits + 7) / 8;

    public static byte[] Pack(ReadOnlySpan<int> codes, int bits)
    {
        if (bits is < 1 or > 24) throw new ArgumentOutOfRangeException(nameof(bits), "1..24 bits per code.");
        var packed = new byte[PackedBytes(codes.Length, bits)];
        long bit = 0;
        int limit = 1 << bits;
        foreach (int code in codes)
        {
            if ((uint)code >= (uint)limit) throw new ArgumentOutOfRangeException(nameof(codes), $"Code {code} does not fit {bits} bits.");
            for (int b = 0; b < bits; b++, bit++)
                if ((code >> b & 1) != 0) packed[bit >> 3] |= (byte)(1 << (int)(bit & 7));
        }
        return packed;
    }

    public static int[] Unpack(ReadOnlySpan<byte> packed, long count, int bits)
    {
        if (bits is < 1 or > 24) throw new ArgumentOutOfRangeException(nameof(bits), "1..24 bits per code.");
        if (packed.Length != PackedBytes(count, bits))
            throw new ArgumentException($"{packed.Length} bytes hold {packed.Length * 8 / bits} codes of {bits} bits, not {count}.");
        var codes = new int[count];
        long bit = 0;
        for (long i = 0; i < count; i++)
        {
            int code = 0;
            for (int b = 0; b < bits; b++, bit++)
                code |= (packed[(int)(bit >> 3)] >> (int)(bit & 7) & 1) << b;
            codes[i] = code;
        }
        return codes;
    }
}
