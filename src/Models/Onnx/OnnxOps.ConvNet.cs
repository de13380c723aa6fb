using TorchSharp;
using static TorchSharp.torch;
using F = TorchSharp.torch.nn.functional;

namespace Msavq.MLNet.Models.Onnx;

/// <summary>
/// The operators of convolutional networks — vision backbones and text recognizers: convolution, batch normalization,
/// pooling and the activations their exporters emit. Windows (kernel, strides, pads, auto_pad) are
/// <see cref="OnnxWindow"/>'s; 1-D forms run as 2-D over height 1.
/// </summary>
internal static partial class OnnxOps
{
    private static readonly Dictionary<string, Op> ConvNetOps = new()
    {
        ["Conv"] = new(1, Conv),
        ["BatchNormalization"] = new(7, BatchNormalization),
        ["MaxPool"] = new(1, MaxPool),
        ["AveragePool"] = new(1, AveragePool),
        ["GlobalAveragePool"] = new(1, n => Unary(n, x => x.mean(Enumerable.Range(2, (int)x.dim() - 2).Select(d => (long)d).ToArray(), keepdim: true))),
        ["GlobalMaxPool"] = new(1, n => Unary(n, x => x.amax(Enumerable.Range(2, (int)x.dim() - 2).Select(d => (long)d).ToArray(), keepdim: true))),
        ["Flatten"] = new(1, Flatten),
        ["Clip"] = new(1, Clip),
        ["HardSigmoid"] = new(6, HardSigmoid),
        ["HardSwish"] = new(14, n => Unary(n, x => F.hardswish(x))),   // x·max(0, min(1, x/6 + ½)), the spec's definition
        ["LeakyRelu"] = new(6, n => { double a = n.Float("alpha", 0.01f); return Unary(n, x => F.leaky_relu(x, a)); }),
    };

    private static OnnxKernel Conv(OnnxNode n)
    {
        n.Expect(2, 3);
        long group = n.Int("group", 1);
        if (group < 1) throw n.Invalid($"group = {group}");
        var window = OnnxWindow.Read(n);
        return v =>
        {
            var (x, w) = (v[0]!, v[1]!);
            var win = window(w.shape.Skip(2).ToArray());
            var w2 = w.dim() == 3 ? w.unsqueeze(2) : w;
            var y = F.conv2d(win.Pad(OnnxWindow.As2D(x, n)), w2, v.Length > 2 ? v[2] : null, win.Strides, new long[2], win.Dilations, group);
            return OnnxWindow.Back(y, x);
        };
    }

    private static OnnxKernel BatchNormalization(OnnxNode n)
    {
        // Inference form: y = (x − mean) / √(var + ε) · scale + B over axis 1; the running-statistics outputs are training's.
        n.Expect(5, 5);
        double epsilon = n.Float("epsilon", 1e-5f);
        n.Float("momentum", 0.9f);   // only updates running statistics, which inference does not
        if (n.Opset < 9 && n.Int("spatial", 1) != 1) throw n.Unsupported("spatial = 0 (statistics per element)");
        if (n.Opset >= 14 && n.Int("training_mode", 0) != 0) throw n.Unsupported("training_mode = 1");
        return v => F.batch_norm(v[0]!, v[3]!, v[4]!, v[1]!, v[2]!, training: false, eps: epsilon);
    }

    private static OnnxKernel MaxPool(OnnxNode n)
    {
        n.Expect(1, 1);   // the Indices output is refused: it alone depends on storage_order
        n.Int("storage_order", 0);
        bool ceil = n.Opset >= 10 && n.Int("ceil_mode", 0) != 0;
        var window = OnnxWindow.Read(n, dilations: n.Opset >= 10);
        return v =>
        {
            var x = v[0]!;
            var win = window(null);
            // Padding never wins a max: it is −∞, and the pooling itself pads nothing.
            var y = F.max_pool2d(win.Pad(OnnxWindow.As2D(x, n), double.NegativeInfinity), win.Kernel, win.Strides, new long[2], win.Dilations, ceil);
            return OnnxWindow.Back(y, x);
        };
    }

    private static OnnxKernel AveragePool(OnnxNode n)
    {
        n.Expect(1, 1);
        bool includePad = n.Opset >= 7 && n.Int("count_include_pad", 0) != 0;
        if (n.Opset >= 10 && n.Int("ceil_mode", 0) != 0) throw n.Unsupported("ceil_mode = 1 for AveragePool");
        var window = OnnxWindow.Read(n, dilations: n.Opset >= 19);
        return v =>
        {
            var x = v[0]!;
            var win = window(null);
            if (win.Dilations.Any(d => d != 1)) throw n.Unsupported("dilations other than 1 for AveragePool");
            var x2 = OnnxWindow.As2D(x, n);
            var padded = win.Pad(x2);
            var y = F.avg_pool2d(padded, win.Kernel, win.Strides, new long[2], false, true);
            if (!includePad && !ReferenceEquals(padded, x2))
            {
                // Divide by the real elements under each window: the mean of a padded mask of ones is their share.
                var share = F.avg_pool2d(win.Pad(ones(1, 1, x2.shape[2], x2.shape[3], x2.dtype, x2.device)), win.Kernel, win.Strides, new long[2], false, true);
                y = y.div(share);
            }
            return OnnxWindow.Back(y, x);
        };
    }

    private static OnnxKernel Flatten(OnnxNode n)
    {
        n.Expect(1, 1);
        long axis = n.Int("axis", 1);
        return v =>
        {
            var x = v[0]!;
            long a = axis == x.dim() ? axis : Axis(axis, x.dim(), n);
            long rows = x.shape.Take((int)a).Aggregate(1L, (p, d) => p * d);
            return x.reshape(rows, x.numel() / Math.Max(rows, 1));
        };
    }

    private static OnnxKernel Clip(OnnxNode n)
    {
        if (n.Opset < 11)
        {
            n.Expect(1, 1);
            double lo = n.Float("min", float.MinValue), hi = n.Float("max", float.MaxValue);
            return v => { using Scalar a = lo.ToScalar(), b = hi.ToScalar(); return v[0]!.clamp(a, b); };
        }
        n.Expect(1, 3);
        return v =>
        {
            var x = v[0]!;
            var min = v.Length > 1 ? v[1] : null;
            var max = v.Length > 2 ? v[2] : null;
            if (min is not null) x = x.maximum(min.to_type(x.dtype));
            if (max is not null) x = x.minimum(max.to_type(x.dtype));
            return min is null && max is null ? x.alias() : x;
        };
    }

    private static OnnxKernel HardSigmoid(OnnxNode n)
    {
        n.Expect(1, 1);
        double alpha = n.Float("alpha", 0.2f), beta = n.Float("beta", 0.5f);
        return v =>
        {
            using Scalar a = alpha.ToScalar(), b = beta.ToScalar(), zero = 0.0.ToScalar(), one = 1.0.ToScalar();
            return v[0]!.mul(a).add(b).clamp(zero, one);
        };
    }
}
