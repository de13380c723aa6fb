using static TorchSharp.torch;

namespace Msavq.MLNet.Quantization;

/// <summary>Per-row uniform grid (scale, zero) for a slice of columns, as the GPTQ reference's <c>Quantizer</c>.</summary>
public sealed record MinMaxGrid(Tensor Scale, Tensor Zero, int MaxQ)
{
    /// <summary>Integer codes clamp(round(x/scale) + zero, 0, maxq) for x [m, k].</summary>
    public Tensor Codes(Tensor x) => (x / Scale.unsqueeze(1)).round().add(Zero.unsqueeze(1)).clamp(0, MaxQ);

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
        var zero0 = zeros(x.shape[0], x.dtype, x.device);
        var xmin = minimum(x.amin(1), zero0);
        var xmax = maximum(x.amax(1), zero0);
        if (symmetric)
        {
            xmax = maximum(xmin.abs(), xmax);
            xmin = where(xmin.lt(0), -xmax, xmin);
        }
        var both = xmin.eq(0).logical_and(xmax.eq(0));
        xmin = where(both, full_like(xmin, -1), xmin);
        xmax = where(both, full_like(xmax, 1), xmax);
        var scale = (xmax - xmin) / maxq;
        var zero = symmetric ? full_like(scale, (maxq + 1) / 2) : (-xmin / scale).round();
        return new MinMaxGrid(scale.MoveToOuterDisposeScope(), zero.MoveToOuterDisposeScope(), maxq);
    }
}
