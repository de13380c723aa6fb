using TorchSharp;
using static TorchSharp.torch;

namespace Msavq.MLNet.Quantization;

/// <summary>How codewords are stored; the bits count toward the budget (architecture.md §9).</summary>
public enum CodebookPrecision
{
    Float32 = 32,
    Float16 = 16,
    /// <summary>Symmetric int8 with one fp16 scale per codebook (GPTVQ §3.4).</summary>
    Int8 = 8,
}

public static class Codebook
{
    /// <summary>Rounds codewords [K, d] to what <paramref name="precision"/> stores, so fitting sees the stored values.</summary>
    public static Tensor Round(Tensor c, CodebookPrecision precision)
    {
        switch (precision)
        {
            case CodebookPrecision.Float16:
                return c.to(ScalarType.Float16).to(c.dtype);
            case CodebookPrecision.Int8:
            {
                using var scope = NewDisposeScope();
                double max = c.abs().max().to(ScalarType.Float64).item<double>();
                double scale = (double)(Half)(max > 0 ? max / 127 : 1.0);
                // Explicit Scalars (WeightedKMeans says why).
                using var s = scale.ToScalar();
                using var low = (-127).ToScalar();
                using var high = 127.ToScalar();
                return c.div(s).round().clamp(low, high).mul(s).MoveToOuterDisposeScope();
            }
            default:
                return c.to(ScalarType.Float32).to(c.dtype);
        }
    }

    /// <summary>Rounds a batch of codebooks [B, K, d], each with its own int8 scale.</summary>
    public static Tensor RoundEach(Tensor books, CodebookPrecision precision) =>
        precision == CodebookPrecision.Int8
            ? stack(Enumerable.Range(0, (int)books.shape[0]).Select(i => Round(books[i], precision)))
            : Round(books, precision);
}
