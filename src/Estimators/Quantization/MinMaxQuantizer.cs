using TorchSharp;
using static TorchSharp.torch;

namespace Msavq.MLNet.Quantization;

/// <summary>Per-row uniform grid (scale, zero) for a slice of columns, as the GPTQ reference's <c>Quantizer</c>.</summary>
public sealed record MinMaxGrid(Tensor Scale, Tensor Zero, int MaxQ)
{
    /// <summary>Integer codes clamp(round(x/scale) + zero, 0, maxq) for x [m, k].</summary>
    public Tensor Codes(Tensor x)
    {
        // Explicit Scalars (WeightedKMeans says why).
        using var one = 1.ToScalar();
        using var low = 0.ToScalar();
        using var high = MaxQ.ToScalar();
        return (x / Scale.unsqueeze(1)).round().add(Zero.unsqueeze(1), one).clamp(low, high);
    }

    public Tensor Dequantize(Tensor codes) => Scale.unsqueeze(1) * (codes - Zero.unsqueeze(1));
}

/// <summary>
/// Asymmetric min–max scalar quantizer of the GPTQ reference (quant.py): the range always contains 0, an all-zero
/// row gets [-1, 1], scale = (max − min)/maxq, zero = round(−min/scale). Symmetric mode as the reference too.
/// </summary>
public static class MinMaxQuantizer
{
    public static MinMaxGrid Fit(Tensor x, int bits, bool symmetric = false)
    {
        if (bits < 1 || bits > 16) throw new ArgumentOutOfRangeException(nameof(bits), "bits must be in 1..16.");
        int maxq = (1 << bits) - 1;
        using var scope = NewDisposeScope();
        using var zero = 0.ToScalar();
        using var minusOne = (-1).ToScalar();
        using var one = 1.ToScalar();
        using var levels = maxq.ToScalar();
        using var middle = ((maxq + 1) / 2).ToScalar();
        var zero0 = zeros(x.shape[0], x.dtype, x.device);
        var xmin = minimum(x.amin(1), zero0);
        var xmax = maximum(x.amax(1), zero0);
        if (symmetric)
        {
            xmax = maximum(xmin.abs(), xmax);
            xmin = where(xmin.lt(zero), -xmax, xmin);
        }
        var both = xmin.eq(zero).logical_and(xmax.eq(zero));
        xmin = where(both, full_like(xmin, minusOne), xmin);
        xmax = where(both, full_like(xmax, one), xmax);
        var scale = (xmax - xmin).div(levels);
        var offset = symmetric ? full_like(scale, middle) : (-xmin / scale).round();
        return new MinMaxGrid(scale.MoveToOuterDisposeScope(), offset.MoveToOuterDisposeScope(), maxq);
    }
}
