namespace Msavq.MLNet.Quantization;

/// <summary>
/// The largest codebook the engine fits. K = 2^(bits·d) grows fast: 4 bits at d = 8 asks for 2³² codewords, which
/// k-means cannot fit on any machine (it was killed at 17.8 GB), so such a request fails before any allocation.
/// </summary>
public static class CodebookLimits
{
    /// <summary>65,536 codewords: QuIP#'s E8P and AQLM's 1×16 codebooks are this size.</summary>
    public const long MaxCodebookSize = 1 << 16;

    /// <exception cref="ArgumentOutOfRangeException">K is not in 1 … <see cref="MaxCodebookSize"/>.</exception>
    public static void Check(double indexBitsPerWeight, int vectorDim)
    {
        double log2K = indexBitsPerWeight * vectorDim;
        if (log2K > 16 || log2K < 0 || double.IsNaN(log2K))
            throw new ArgumentOutOfRangeException(nameof(indexBitsPerWeight),
                $"{indexBitsPerWeight:0.###} bits per weight at d = {vectorDim} asks for a codebook of 2^{log2K:0.##} codewords: " +
                $"{Math.Pow(2, log2K) * vectorDim / (1L << 30):N1} GiB of int8 codewords alone, and k-means distances of that many " +
                $"columns per point. The largest supported codebook has {MaxCodebookSize:N0} codewords (2^16).");
    }

    /// <exception cref="ArgumentOutOfRangeException">K is not in 1 … <see cref="MaxCodebookSize"/>.</exception>
    public static void Check(long k, int vectorDim)
    {
        if (k < 1 || k > MaxCodebookSize)
            throw new ArgumentOutOfRangeException(nameof(k),
                $"A codebook of {k:N0} codewords of dimension {vectorDim} is outside 1 … {MaxCodebookSize:N0} (2^16).");
    }
}
