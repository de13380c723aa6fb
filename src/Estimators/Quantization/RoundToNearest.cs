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
}
