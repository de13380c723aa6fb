using TorchSharp;
using static TorchSharp.torch;
using F = TorchSharp.torch.nn.functional;

namespace Msavq.MLNet.Models.Onnx;

/// <summary>
/// The sliding window of a Conv or pooling node over one or two spatial axes: kernel, strides, dilations and padding
/// as ONNX gives them — explicit <c>pads</c> [x1_begin, x2_begin, …, x1_end, x2_end], which may be asymmetric, or
/// <c>auto_pad</c>, whose padding depends on the input size. Everything runs in 2-D: a 1-D input [N, C, L] is
/// [N, C, 1, L] to the kernels, so one code path serves both.
/// </summary>
internal sealed record OnnxWindow(long[] Kernel, long[] Strides, long[] Dilations, long[] Pads, string AutoPad)
{
    /// <summary>
    /// Reads the window attributes of <paramref name="n"/> now (so unknown ones are refused at load time) and returns
    /// the window for a kernel: a Conv's <c>kernel_shape</c> is optional, the weight's spatial shape then gives it, so
    /// the function takes that shape (null for pooling, where the attribute is required).
    /// </summary>
    public static Func<long[]?, OnnxWindow> Read(OnnxNode n, bool dilations = true)
    {
        var given = n.Ints("kernel_shape");
        var strides = n.Ints("strides");
        var dil = dilations ? n.Ints("dilations") : null;
        string autoPad = n.String("auto_pad", "NOTSET");
        var pads = n.Ints("pads");
        if (autoPad is not ("NOTSET" or "SAME_UPPER" or "SAME_LOWER" or "VALID")) throw n.Invalid($"auto_pad = '{autoPad}'");
        if (pads != null && autoPad != "NOTSET" && pads.Any(p => p != 0)) throw n.Invalid($"both pads and auto_pad = {autoPad}");
        int? rank = given?.Length ?? strides?.Length ?? dil?.Length ?? (pads?.Length / 2);
        if (rank is < 1 or > 2) throw n.Unsupported($"a {rank}-D window (1-D and 2-D only)");
        return weight =>
        {
            var shape = given ?? weight ?? throw n.Invalid("no kernel_shape");
            if (weight != null && !shape.SequenceEqual(weight))
                throw n.Invalid($"kernel_shape [{string.Join(", ", shape)}] differs from the weight's [{string.Join(", ", weight)}]");
            int r = shape.Length;
            if (r is < 1 or > 2) throw n.Unsupported($"a {r}-D window (1-D and 2-D only)");
            var s = strides ?? Ones(r);
            var d = dil ?? Ones(r);
            var p = pads ?? new long[2 * r];
            if (s.Length != r || d.Length != r || p.Length != 2 * r)
                throw n.Invalid($"strides, dilations or pads do not match a {r}-D kernel");
            if (s.Any(v => v < 1) || d.Any(v => v < 1) || p.Any(v => v < 0) || shape.Any(k => k < 1))
                throw n.Invalid("a kernel size, stride or dilation below 1, or a negative pad");
            // The spec pads for the dilated kernel, ONNX Runtime refuses (Conv) or ignores the dilation (MaxPool): no answer to match.
            if (autoPad is "SAME_UPPER" or "SAME_LOWER" && d.Any(v => v != 1))
                throw n.Unsupported($"auto_pad = {autoPad} with dilations other than 1");
            // Stored as 2-D: a 1-D window is 1 × k over height 1.
            return r == 2
                ? new OnnxWindow(shape, s, d, p, autoPad)
                : new OnnxWindow(new[] { 1, shape[0] }, new[] { 1, s[0] }, new[] { 1, d[0] }, new[] { 0, p[0], 0, p[1] }, autoPad);
        };
    }

    private static long[] Ones(int rank) => Enumerable.Repeat(1L, rank).ToArray();

    /// <summary>[N, C, L] as [N, C, 1, L]; 4-D as it is.</summary>
    public static Tensor As2D(Tensor x, OnnxNode n) => x.dim() switch
    {
        3 => x.unsqueeze(2),
        4 => x,
        _ => throw new ArgumentException($"ONNX {n.Describe()}: input [{string.Join(", ", x.shape)}] is not [N, C, L] or [N, C, H, W]."),
    };

    /// <summary>The 2-D result <paramref name="y"/> back in the input's rank.</summary>
    public static Tensor Back(Tensor y, Tensor x) => x.dim() == 3 ? y.squeeze(2) : y;

    /// <summary>Pads [begin, end] of height and width for a 2-D input of <paramref name="height"/> × <paramref name="width"/>.</summary>
    public (long Top, long Left, long Bottom, long Right) Padding(long height, long width)
    {
        if (AutoPad is "NOTSET") return (Pads[0], Pads[1], Pads[2], Pads[3]);
        if (AutoPad is "VALID") return (0, 0, 0, 0);
        // SAME_*: output = ceil(input / stride); the extra pad goes at the end (UPPER) or the beginning (LOWER).
        (long Begin, long End) Same(long input, int i)
        {
            long output = (input + Strides[i] - 1) / Strides[i];
            long total = Math.Max(0, (output - 1) * Strides[i] + (Kernel[i] - 1) * Dilations[i] + 1 - input);
            return AutoPad == "SAME_UPPER" ? (total / 2, total - total / 2) : (total - total / 2, total / 2);
        }
        var (top, bottom) = Same(height, 0);
        var (left, right) = Same(width, 1);
        return (top, left, bottom, right);
    }

    /// <summary>The 2-D input <paramref name="x"/> with the window's padding, filled with <paramref name="value"/>.</summary>
    public Tensor Pad(Tensor x, double value = 0)
    {
        var (top, left, bottom, right) = Padding(x.shape[2], x.shape[3]);
        if (top == 0 && left == 0 && bottom == 0 && right == 0) return x;
        return F.pad(x, new[] { left, right, top, bottom }, PaddingModes.Constant, value);
    }
}
