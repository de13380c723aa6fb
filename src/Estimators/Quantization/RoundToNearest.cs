using TorchSharp;
using static TorchSharp.torch;

namespace Msavq.MLNet.Quantization;

/// <summary>Round-to-nearest baseline: the min–max grid of each (row, group) with no error compensation.</summary>
public static class RoundToNearest
{
    /// <param name="w">[m, n] weight.</param>
    /// <param name="bits">2..8.</param>
    /// <param name="groupSize">Columns per group; ≤ 0 means one group per row (per channel).</param>
    public static ScalarQuantizedWeight Quantize(Tensor w, int bits, int groupSize = -1, bool symmetric = false)
    {
        if (bits < 2 || bits > 8) throw new ArgumentOutOfRangeException(nameof(bits), "RTN supports 2..8 bits.");
        long n = w.shape[1];
        int g = groupSize <= 0 ? (int)n : groupSize;
        int groups = (int)((n + g - 1) / g);
        using var scope = NewDisposeScope();
        var codes = zeros_like(w);
        var scales = zeros(w.shape[0], groups, w.dtype, w.device);
        var zerosT = zeros(w.shape[0], groups, w.dtype, w.device);
        for (int k = 0; k < groups; k++)
        {
            long c0 = (long)k * g, c1 = Math.Min(c0 + g, n);
            var slice = w[.., (int)c0..(int)c1];
            var grid = MinMaxQuantizer.Fit(slice, bits, symmetric);
            codes[.., (int)c0..(int)c1] = grid.Codes(slice);
            scales[.., k] = grid.Scale;
            zerosT[.., k] = grid.Zero;
        }
        return new ScalarQuantizedWeight
        {
            Codes = codes.MoveToOuterDisposeScope(), Scales = scales.MoveToOuterDisposeScope(),
            Zeros = zerosT.MoveToOuterDisposeScope(), GroupOfColumn = Enumerable.Range(0, (int)n).Select(j => j / g).ToArray(),
            Bits = bits, GroupSize = g,
        };
    }

    /// <summary>
    /// Round-to-nearest on the plain min–max grid, levels min + k·(max − min)/(2^bits − 1) per (row, group), with the
    /// scale and the offset min rounded to fp16 (2 × 16 bits per group) — the grid of many RTN write-ups. It differs
    /// from <see cref="Quantize"/>'s zero-point grid in one way that matters at 2 bits: it has no level at zero, so
    /// every small weight moves by up to half a step. A .msavq file does not store it (its zeros are integers); it is
    /// kept as the reference for comparing with RTN numbers published on that grid (RoundToNearestTests).
    /// </summary>
    /// <returns>The dequantized weight, same shape and dtype as <paramref name="w"/>.</returns>
    public static Tensor DequantizePlainMinMax(Tensor w, int bits, int groupSize)
    {
        if (bits < 1 || bits > 8) throw new ArgumentOutOfRangeException(nameof(bits), "bits must be in 1..8.");
        if (groupSize < 1) throw new ArgumentOutOfRangeException(nameof(groupSize), "groupSize must be >= 1.");
        int maxq = (1 << bits) - 1;
        long n = w.shape[1];
        // Explicit Scalars: TorchSharp leaves implicit ones to the finalizer (see RmsNorm).
        using var top = ((double)maxq).ToScalar();
        using var bottom = 0.0.ToScalar();
        using var one = 1.ToScalar();   // the alpha of a tensor + tensor
        using var scope = NewDisposeScope();
        var x = w.to(ScalarType.Float32);
        var parts = new List<Tensor>();
        for (long c0 = 0; c0 < n; c0 += groupSize)
        {
            var g = x[.., (int)c0..(int)Math.Min(c0 + groupSize, n)];
            var lo = g.amin(new long[] { 1 }, keepdim: true);
            var hi = g.amax(new long[] { 1 }, keepdim: true);
            // A constant group gets scale 1 (its only value is the offset itself).
            var range = hi - lo;
            var scale = where(range.gt(bottom), range.div(top), ones_like(range)).to(ScalarType.Float16).to(ScalarType.Float32);
            var offset = lo.to(ScalarType.Float16).to(ScalarType.Float32);
            parts.Add(g.sub(offset).div(scale).round().clamp(bottom, top).mul(scale).add(offset, one));
        }
        return cat(parts, 1).to(w.dtype).MoveToOuterDisposeScope();
    }
}
