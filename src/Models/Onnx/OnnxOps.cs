using TorchSharp;
using static TorchSharp.torch;
using F = TorchSharp.torch.nn.functional;

namespace Msavq.MLNet.Models.Onnx;

/// <summary>A compiled node: its input values (null for an omitted optional input) in, its one output out.</summary>
internal delegate Tensor OnnxKernel(Tensor?[] inputs);

/// <summary>
/// The ONNX operators <see cref="OnnxExecutor"/> runs, in TorchSharp, eagerly (so autograd sees every step). Each
/// entry compiles a node once, when the model loads: it reads and checks every attribute, picks the attribute or
/// input form its opset uses, and returns the kernel. Whatever a kernel would not compute as the spec says — an
/// unknown operator, attribute or attribute value, a type TorchSharp lacks — is refused here, not mid-calibration.
/// </summary>
internal static partial class OnnxOps
{
    /// <summary>The opsets of the default domain whose forms of the operators below are implemented.</summary>
    public const int MinOpset = 8, MaxOpset = 21;

    private sealed record Op(int Since, Func<OnnxNode, OnnxKernel> Compile);

    private static readonly Dictionary<string, Op> Ops = new()
    {
        ["Add"] = new(1, n => Binary(n, (a, b) => a.add(b))),
        ["Sub"] = new(1, n => Binary(n, (a, b) => a.sub(b))),
        ["Mul"] = new(1, n => Binary(n, (a, b) => a.mul(b))),
        // Integer Div truncates (C semantics, as ONNX Runtime); TorchSharp's div would return floats.
        ["Div"] = new(1, n => Binary(n, (a, b) => is_floating_point(a.dtype) ? a.div(b) : a.div(b, RoundingMode.trunc))),
        // The exponent may have another type than the base (opset 12); the result has the base's.
        ["Pow"] = new(1, n => Binary(n, (a, b) => a.pow(b).to_type(a.dtype))),
        ["Equal"] = new(1, n => Binary(n, (a, b) => a.eq(b))),
        ["MatMul"] = new(1, n => Binary(n, (a, b) => a.matmul(b))),
        ["Sqrt"] = new(1, n => Unary(n, x => x.sqrt())),
        ["Neg"] = new(1, n => Unary(n, x => x.neg())),
        ["Exp"] = new(1, n => Unary(n, x => x.exp())),
        ["Log"] = new(1, n => Unary(n, x => x.log())),
        ["Tanh"] = new(1, n => Unary(n, x => x.tanh())),
        ["Erf"] = new(9, n => Unary(n, x => x.erf())),
        ["Relu"] = new(1, n => Unary(n, x => x.relu())),
        ["Sigmoid"] = new(1, n => Unary(n, x => x.sigmoid())),
        ["Identity"] = new(1, n => Unary(n, x => x.alias())),
        ["Gelu"] = new(20, Gelu),
        ["Softmax"] = new(1, Softmax),
        ["ReduceMean"] = new(1, n => Reduce(n, since: 18, (x, dims, keep) => x.mean(dims, keep))),
        ["ReduceSum"] = new(1, n => Reduce(n, since: 13, (x, dims, keep) => x.sum(dims, keep))),
        ["LayerNormalization"] = new(17, LayerNormalization),
        ["Gemm"] = new(1, Gemm),
        ["Reshape"] = new(5, Reshape),
        ["Transpose"] = new(1, Transpose),
        ["Squeeze"] = new(1, Squeeze),
        ["Unsqueeze"] = new(1, Unsqueeze),
        ["Concat"] = new(4, Concat),
        ["Slice"] = new(1, Slice),
        ["Gather"] = new(1, Gather),
        ["Shape"] = new(1, Shape),
        ["Cast"] = new(6, Cast),
        ["Expand"] = new(8, Expand),
        ["Where"] = new(9, n => { n.Expect(3, 3); return v => where(v[0]!, v[1]!, v[2]!); }),
        ["ConstantOfShape"] = new(9, ConstantOfShape),
        ["Range"] = new(11, Range),
    };

    /// <summary>Every operator of the default domain that loads, <c>Constant</c> included (a weight, <see cref="Constant"/>).</summary>
    public static IReadOnlyList<string> Supported =>
        Ops.Keys.Concat(ConvNetOps.Keys).Append("Constant").Order(StringComparer.Ordinal).ToList();

    /// <summary>The kernel of <paramref name="node"/>, or the error that says why it cannot run.</summary>
    public static OnnxKernel Compile(OnnxNode node)
    {
        if (!Ops.TryGetValue(node.OpType, out var op) && !ConvNetOps.TryGetValue(node.OpType, out op))
            throw new NotSupportedException($"{node.Unsupported($"operator {node.OpType}").Message} Supported: {string.Join(", ", Supported)}.");
        if (node.Opset < op.Since) throw node.Invalid($"{node.OpType} does not exist before opset {op.Since}");
        var kernel = op.Compile(node);
        node.EnsureAllRead();
        return kernel;
    }

    /// <summary>The value of a <c>Constant</c> node, on the CPU: it is a weight of the graph, not a step.</summary>
    public static Tensor Constant(OnnxNode node)
    {
        node.Expect(0, 0);
        var tensor = node.Tensor("value");
        var floats = node.Floats("value_floats");
        var ints = node.Ints("value_ints");
        bool hasFloat = node.Has("value_float"), hasInt = node.Has("value_int");
        float f = node.Float("value_float", 0);
        long i = node.Int("value_int", 0);
        node.EnsureAllRead();   // sparse_value, value_string(s): no TorchSharp tensor to hold them
        int given = (tensor != null ? 1 : 0) + (floats != null ? 1 : 0) + (ints != null ? 1 : 0) + (hasFloat ? 1 : 0) + (hasInt ? 1 : 0);
        if (given != 1) throw node.Invalid($"{given} value attributes, expected exactly one");
        if (tensor != null) return OnnxTensors.ToTensor(tensor, $"the value of {node.Describe()}");
        if (floats != null) return torch.tensor(floats);   // cpu: a constant, a buffer that moves with the module
        if (ints != null) return torch.tensor(ints);   // cpu: as above
        return hasFloat ? torch.tensor(f) : torch.tensor(i);   // cpu: as above
    }

    private static OnnxKernel Unary(OnnxNode n, Func<Tensor, Tensor> f)
    {
        n.Expect(1, 1);
        return v => f(v[0]!);
    }

    private static OnnxKernel Binary(OnnxNode n, Func<Tensor, Tensor, Tensor> f)
    {
        n.Expect(2, 2);
        return v => f(v[0]!, v[1]!);
    }

    /// <summary>The integers a shape-like input holds (shapes, axes, indices computed by the graph).</summary>
    private static long[] Longs(Tensor t) => t.cpu().to_type(ScalarType.Int64).data<long>().ToArray();

    private static long Axis(long axis, long rank, OnnxNode n) =>
        axis >= -rank && axis < rank ? (axis + rank) % rank
            : throw new ArgumentException($"ONNX {n.Describe()}: axis {axis} is outside a rank-{rank} tensor.");

    private static OnnxKernel Gelu(OnnxNode n)
    {
        n.Expect(1, 1);
        string approximate = n.String("approximate", "none");
        if (approximate == "none") return v => F.gelu(v[0]!);
        if (approximate != "tanh") throw n.Unsupported($"approximate = '{approximate}'");
        // 0.5·x·(1 + tanh(√(2/π)·(x + 0.044715·x³))), the spec's formula (TorchSharp 0.107's gelu has no tanh form).
        return v =>
        {
            var x = v[0]!;
            using var three = 3.0.ToScalar();
            using var c = 0.044715.ToScalar();
            using var k = Math.Sqrt(2 / Math.PI).ToScalar();
            using var one = 1.0.ToScalar();
            using var half = 0.5.ToScalar();
            return x.mul(x.pow(three).mul(c).add(x).mul(k).tanh().add(one)).mul(half);
        };
    }

    private static OnnxKernel Softmax(OnnxNode n)
    {
        n.Expect(1, 1);
        long axis = n.Int("axis", n.Opset < 13 ? 1 : -1);
        if (n.Opset >= 13) return v => v[0]!.softmax(Axis(axis, v[0]!.dim(), n));
        // Before opset 13 the input is coerced to 2-D, [∏ dims before axis, ∏ dims from axis], normalized per row.
        return v =>
        {
            var x = v[0]!;
            long a = Axis(axis, x.dim(), n);
            long rows = x.shape.Take((int)a).Aggregate(1L, (p, d) => p * d);
            return x.reshape(rows, -1).softmax(1).reshape(x.shape);
        };
    }

    /// <param name="since">The opset from which the axes are an input rather than an attribute.</param>
    private static OnnxKernel Reduce(OnnxNode n, int since, Func<Tensor, long[], bool, Tensor> reduce)
    {
        bool keep = n.Int("keepdims", 1) != 0;
        long[]? fixedAxes = null;
        bool noopWhenEmpty = false;
        if (n.Opset < since)
        {
            n.Expect(1, 1);
            fixedAxes = n.Ints("axes");
        }
        else
        {
            n.Expect(1, 2);
            noopWhenEmpty = n.Int("noop_with_empty_axes", 0) != 0;
        }
        return v =>
        {
            var x = v[0]!;
            long[]? axes = fixedAxes ?? (v.Length > 1 && v[1] is { } a ? Longs(a) : null);
            if (axes is null || axes.Length == 0)
            {
                if (noopWhenEmpty) return x.alias();
                axes = Enumerable.Range(0, (int)x.dim()).Select(d => (long)d).ToArray();
            }
            return reduce(x, axes.Select(d => Axis(d, x.dim(), n)).Distinct().ToArray(), keep);
        };
    }

    private static OnnxKernel LayerNormalization(OnnxNode n)
    {
        n.Expect(2, 3);
        long axis = n.Int("axis", -1);
        double epsilon = n.Float("epsilon", 1e-5f);
        long stash = n.Int("stash_type", 1);
        if (stash != 1) throw n.Unsupported($"stash_type = {stash} (statistics in float32 only)");
        return v =>
        {
            var x = v[0]!;
            var normalized = x.shape.Skip((int)Axis(axis, x.dim(), n)).ToArray();
            return F.layer_norm(x, normalized, v[1]!.expand(normalized), v.Length > 2 ? v[2]?.expand(normalized) : null, epsilon);
        };
    }

    private static OnnxKernel Gemm(OnnxNode n)
    {
        n.Expect(n.Opset < 11 ? 3 : 2, 3);
        bool transA = n.Int("transA", 0) != 0, transB = n.Int("transB", 0) != 0;
        double alpha = n.Float("alpha", 1), beta = n.Float("beta", 1);
        return v =>
        {
            var y = (transA ? v[0]!.t() : v[0]!).matmul(transB ? v[1]!.t() : v[1]!);
            if (alpha != 1) { using var s = alpha.ToScalar(); y = y.mul(s); }
            if (v.Length < 3 || v[2] is not { } c) return y;
            if (beta == 1) return y.add(c);
            using var b = beta.ToScalar();
            return y.add(c.mul(b));
        };
    }

    private static OnnxKernel Reshape(OnnxNode n)
    {
        n.Expect(2, 2);
        bool allowZero = n.Int("allowzero", 0) != 0;
        return v =>
        {
            var x = v[0]!;
            var shape = Longs(v[1]!);
            // 0 copies the input's dimension unless allowzero (opset 14) says it means an empty dimension.
            if (!allowZero)
                for (int i = 0; i < shape.Length; i++)
                    if (shape[i] == 0) shape[i] = x.shape[i];
            return x.reshape(shape);
        };
    }

    private static OnnxKernel Transpose(OnnxNode n)
    {
        n.Expect(1, 1);
        var perm = n.Ints("perm");
        return v => v[0]!.permute(perm ?? Enumerable.Range(0, (int)v[0]!.dim()).Reverse().Select(d => (long)d).ToArray());
    }

    /// <summary>The axes of Squeeze and Unsqueeze: an attribute before opset 13, an optional input from it.</summary>
    private static Func<Tensor?[], long[]?> Axes(OnnxNode n)
    {
        if (n.Opset < 13)
        {
            n.Expect(1, 1);
            var axes = n.Ints("axes");
            return _ => axes;
        }
        n.Expect(1, 2);
        return v => v.Length > 1 && v[1] is { } a ? Longs(a) : null;
    }

    private static OnnxKernel Squeeze(OnnxNode n)
    {
        var axesOf = Axes(n);
        return v =>
        {
            var x = v[0]!;
            var axes = axesOf(v)?.Select(a => Axis(a, x.dim(), n)).ToHashSet();
            if (axes != null && axes.Any(a => x.shape[a] != 1))
                throw new ArgumentException($"ONNX {n.Describe()}: squeezes a dimension of [{string.Join(", ", x.shape)}] that is not 1.");
            return x.reshape(x.shape.Where((d, i) => axes is null ? d != 1 : !axes.Contains(i)).ToArray());
        };
    }

    private static OnnxKernel Unsqueeze(OnnxNode n)
    {
        var axesOf = Axes(n);
        return v =>
        {
            var x = v[0]!;
            var given = axesOf(v) ?? throw new ArgumentException($"ONNX {n.Describe()}: no axes.");
            long rank = x.dim() + given.Length;
            var axes = given.Select(a => Axis(a, rank, n)).ToHashSet();
            var shape = new List<long>(x.shape);
            foreach (var a in axes.Order()) shape.Insert((int)a, 1);
            return x.reshape(shape.ToArray());
        };
    }

    private static OnnxKernel Concat(OnnxNode n)
    {
        n.Expect(1, int.MaxValue);
        long axis = n.Int("axis", long.MinValue);
        if (axis == long.MinValue) throw n.Invalid("no axis");
        return v => cat(v.Select(t => t!).ToArray(), Axis(axis, v[0]!.dim(), n));
    }

    private static OnnxKernel Slice(OnnxNode n)
    {
        Func<Tensor?[], (long[] Starts, long[] Ends, long[]? Axes, long[]? Steps)> args;
        if (n.Opset < 10)
        {
            n.Expect(1, 1);
            var starts = n.Ints("starts") ?? throw n.Invalid("no starts");
            var ends = n.Ints("ends") ?? throw n.Invalid("no ends");
            var axes = n.Ints("axes");
            args = _ => (starts, ends, axes, null);
        }
        else
        {
            n.Expect(3, 5);
            args = v => (Longs(v[1]!), Longs(v[2]!), v.Length > 3 && v[3] is { } a ? Longs(a) : null,
                         v.Length > 4 && v[4] is { } s ? Longs(s) : null);
        }
        return v =>
        {
            var x = v[0]!;
            var (starts, ends, axes, steps) = args(v);
            if (ends.Length != starts.Length || axes?.Length is { } na && na != starts.Length || steps?.Length is { } ns && ns != starts.Length)
                throw new ArgumentException($"ONNX {n.Describe()}: starts, ends, axes and steps differ in length.");
            var y = x;
            for (int i = 0; i < starts.Length; i++)
                y = SliceAxis(y, Axis(axes?[i] ?? i, x.dim(), n), starts[i], ends[i], steps?[i] ?? 1, n);
            return y;
        };
    }

    /// <summary>One axis of Slice, with the spec's clamping; a negative step runs on the flipped axis.</summary>
    private static Tensor SliceAxis(Tensor x, long axis, long start, long end, long step, OnnxNode n)
    {
        if (step == 0) throw new ArgumentException($"ONNX {n.Describe()}: step 0.");
        long dim = x.shape[axis];
        static long Wrap(long i, long dim) => i < 0 ? Math.Max(i, long.MinValue + dim) + dim : i;
        start = Wrap(start, dim);
        end = Wrap(end, dim);
        if (step > 0)
        {
            start = Math.Clamp(start, 0, dim);
            end = Math.Clamp(end, 0, dim);
            return x.slice(axis, start, Math.Max(start, end), step);
        }
        start = Math.Clamp(start, 0, dim - 1);
        end = Math.Clamp(end, -1, dim - 1);
        // Elements start, start+step, … > end are, on the flipped axis, dim-1-start … < dim-1-end with step -step.
        long from = dim - 1 - start, to = dim - 1 - end;
        return x.flip(axis).slice(axis, from, Math.Max(from, to), -step);
    }

    private static OnnxKernel Gather(OnnxNode n)
    {
        n.Expect(2, 2);
        long axis = n.Int("axis", 0);
        return v =>
        {
            var (data, indices) = (v[0]!, v[1]!.to_type(ScalarType.Int64));
            long a = Axis(axis, data.dim(), n), dim = data.shape[a];
            using var zero = 0L.ToScalar();
            using var size = dim.ToScalar();
            var index = where(indices.lt(zero), indices.add(size), indices);
            // data[..a] + indices.shape + data[a+1..]: a 0-d index removes the axis.
            var shape = data.shape.Take((int)a).Concat(indices.shape).Concat(data.shape.Skip((int)a + 1)).ToArray();
            return data.index_select(a, index.reshape(-1)).reshape(shape);
        };
    }

    private static OnnxKernel Shape(OnnxNode n)
    {
        n.Expect(1, 1);
        long start = n.Int("start", 0), end = n.Int("end", long.MaxValue);
        return v =>
        {
            var x = v[0]!;
            long rank = x.dim();
            long Clamp(long i) => Math.Clamp(i < 0 ? i + rank : i, 0, rank);
            long from = Clamp(start), to = Clamp(end);
            return tensor(x.shape.Skip((int)from).Take((int)Math.Max(0, to - from)).ToArray(), device: x.device);
        };
    }

    private static OnnxKernel Cast(OnnxNode n)
    {
        n.Expect(1, 1);
        int to = (int)n.Int("to", 0);
        // saturate (opset 19) only concerns float8 targets, which are refused below.
        n.Int("saturate", 1);
        var type = OnnxTensors.ScalarTypeOf(to) ?? throw n.Unsupported($"cast to {OnnxTensors.NameOf(to)}");
        return v => v[0]!.to_type(type);
    }

    private static OnnxKernel Expand(OnnxNode n)
    {
        n.Expect(2, 2);
        return v =>
        {
            var x = v[0]!;
            var target = Longs(v[1]!);
            // Two-way broadcast (numpy rules): a target dimension of 1 keeps the input's, unlike torch's expand.
            int rank = Math.Max(target.Length, (int)x.dim());
            int padX = rank - (int)x.dim(), padTarget = rank - target.Length;
            var shape = new long[rank];
            for (int i = 0; i < rank; i++)
            {
                long a = i >= padX ? x.shape[i - padX] : 1;
                long b = i >= padTarget ? target[i - padTarget] : 1;
                if (a != b && a != 1 && b != 1)
                    throw new ArgumentException($"ONNX {n.Describe()}: [{string.Join(", ", x.shape)}] does not broadcast to [{string.Join(", ", target)}].");
                shape[i] = a == 1 ? b : a;
            }
            return x.expand(shape);
        };
    }

    private static OnnxKernel ConstantOfShape(OnnxNode n)
    {
        n.Expect(1, 1);
        var proto = n.Tensor("value");
        var (type, value) = (ScalarType.Float32, 0.0);
        if (proto != null)
        {
            using var t = OnnxTensors.ToTensor(proto, $"the value of {n.Describe()}");
            if (t.numel() != 1) throw n.Invalid($"value has {t.numel()} elements, expected 1");
            (type, value) = (t.dtype, t.to_type(ScalarType.Float64).item<double>());
        }
        return v =>
        {
            using var s = value.ToScalar();
            return full(Longs(v[0]!), s, type, v[0]!.device);
        };
    }

    private static OnnxKernel Range(OnnxNode n)
    {
        n.Expect(3, 3);
        return v =>
        {
            var (start, limit, delta) = (v[0]!, v[1]!, v[2]!);
            Scalar Value(Tensor t) => is_floating_point(t.dtype) ? t.to_type(ScalarType.Float64).item<double>().ToScalar()
                                                                  : t.to_type(ScalarType.Int64).item<long>().ToScalar();
            using Scalar a = Value(start), b = Value(limit), d = Value(delta);
            return arange(a, b, d, start.dtype, start.device);
        };
    }
}
