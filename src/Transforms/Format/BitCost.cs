using System.Numerics;

namespace Msavq.MLNet.Format;

/// <summary>
/// Honest bit accounting (architecture.md §9), the one source every plan, engine result and stored layer uses: every
/// stored bit — codes, codebooks, scales, zeros, column maps — divided by the number of weights. Codes are counted at
/// the width the file packs them (<see cref="CodeBits"/>), so the accounted bits are the bits a .msavq file holds
/// (test: the bytes written match within the header). Biases and shapes are not counted (they are not weights).
/// </summary>
public sealed record BitCost(long Weights, double IndexBits, double CodebookBits, double ScaleBits, double PermutationBits)
{
    public double TotalBits => IndexBits + CodebookBits + ScaleBits + PermutationBits;
    public double BitsPerWeight => TotalBits / Weights;
    public double IndexBitsPerWeight => IndexBits / Weights;
    public double OverheadBitsPerWeight => (TotalBits - IndexBits) / Weights;

    /// <summary>Bits a code of an alphabet of <paramref name="k"/> symbols is packed in: ⌈log2 k⌉, at least 1.</summary>
    public static int CodeBits(long k) => k <= 2 ? 1 : BitOperations.Log2((ulong)(k - 1)) + 1;

    /// <summary>A column map (permutation or group index) of n columns: n entries of <see cref="CodeBits"/>(n).</summary>
    public static double ColumnMap(long n) => (double)n * CodeBits(n);

    /// <summary>One codebook of K codewords of dimension d: int8 with one fp16 scale, or fp16.</summary>
    public static double Codebook(long k, int d, bool int8) => (double)k * d * (int8 ? 8 : 16) + (int8 ? 16 : 0);

    /// <summary>One fp16 scale per output row.</summary>
    public static double RowScales(long rows) => 16.0 * rows;

    /// <summary>
    /// Vector quantization: per tile of <paramref name="tileWeights"/> weights, a code of <see cref="CodeBits"/>(K_t)
    /// per d-vector and its codebook; plus the column order and row scales when stored.
    /// </summary>
    public static BitCost Vector(long rows, long columns, int d, long tileWeights, IEnumerable<int> tileCodebookSizes, bool int8,
                                 bool permuted = false, bool rowScaled = false)
    {
        double index = 0, books = 0;
        foreach (int k in tileCodebookSizes)
        {
            index += tileWeights / d * (double)CodeBits(k);
            books += Codebook(k, d, int8);
        }
        return new BitCost(rows * columns, index, books, rowScaled ? RowScales(rows) : 0, permuted ? ColumnMap(columns) : 0);
    }

    /// <summary>
    /// Uniform scalar grid: codes at <paramref name="bits"/>, per row and group an fp16 scale and a bits-wide zero
    /// (GPTQ packing); a group map when act-order scatters a group's columns.
    /// </summary>
    public static BitCost Scalar(long rows, long columns, int bits, long groups, bool groupMap) =>
        new(rows * columns, (double)rows * columns * bits, 0, (double)rows * groups * (16 + bits), groupMap ? ColumnMap(columns) : 0);

    public static BitCost operator +(BitCost a, BitCost b) =>
        new(a.Weights + b.Weights, a.IndexBits + b.IndexBits, a.CodebookBits + b.CodebookBits,
            a.ScaleBits + b.ScaleBits, a.PermutationBits + b.PermutationBits);
}
