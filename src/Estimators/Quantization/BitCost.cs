namespace Msavq.MLNet.Quantization;

/// <summary>
/// Honest bit accounting (architecture.md §9): every stored bit — indices, codebooks, scales, zeros, permutations —
/// divided by the number of weights. Biases and shapes are not counted (they are not weights).
/// </summary>
public sealed record BitCost(long Weights, double IndexBits, double CodebookBits, double ScaleBits, double PermutationBits)
{
    public double TotalBits => IndexBits + CodebookBits + ScaleBits + PermutationBits;
    public double BitsPerWeight => TotalBits / Weights;
    public double IndexBitsPerWeight => IndexBits / Weights;
    public double OverheadBitsPerWeight => (TotalBits - IndexBits) / Weights;

    /// <summary>Bits of a permutation of n columns stored as n indices of ⌈log2 n⌉ bits.</summary>
    public static double PermutationCost(long n) => n * Math.Ceiling(Math.Log2(Math.Max(n, 2)));

    /// <summary>Uniform grid: codes at <paramref name="bits"/>, per row and group an fp16 scale and a bits-wide zero (GPTQ packing).</summary>
    public static BitCost Scalar(long rows, long columns, int bits, long groups, bool permuted) =>
        new(rows * columns, (double)rows * columns * bits, 0, (double)rows * groups * (16 + bits),
            permuted ? PermutationCost(columns) : 0);

    public static BitCost operator +(BitCost a, BitCost b) =>
        new(a.Weights + b.Weights, a.IndexBits + b.IndexBits, a.CodebookBits + b.CodebookBits,
            a.ScaleBits + b.ScaleBits, a.PermutationBits + b.PermutationBits);
}
