using Google.Protobuf;
using Onnx;
using static TorchSharp.torch;

namespace Msavq.MLNet.Models.Onnx;

/// <summary>
/// A value the graph reads from outside: its name, ONNX element type (<see cref="OnnxTensors.ScalarTypeOf"/>) and
/// declared shape (null when the file declares none; a null dimension is symbolic, e.g. the batch).
/// </summary>
public sealed record OnnxInput(string Name, int ElementType, long?[]? Dims = null);

/// <summary>
/// A constant of the graph, an initializer or the value of a <c>Constant</c> node: its shape, type (null for a type
/// TorchSharp lacks, refused when it is made) and how to make it, on the CPU.
/// </summary>
internal sealed record OnnxConstant(long[] Shape, ScalarType? Type, Func<Tensor> Create);

/// <summary>A compiled node of the plan.</summary>
internal sealed record OnnxStep(OnnxNode Node, OnnxKernel Kernel)
{
    public IEnumerable<string> Reads => Node.Proto.Input.Where(i => i.Length > 0);
}

/// <summary>
/// An ONNX model read and checked, ready to run (<see cref="OnnxExecutor"/>): the nodes that compute the requested
/// outputs, compiled by <see cref="OnnxOps"/> in topological order, and the constants they read (initializers and
/// <c>Constant</c> nodes). Everything that could stop a run — a truncated file, an opset or operator or attribute we do
/// not implement, a value nothing produces — is an exception here, when the model loads. Nodes the outputs do not
/// need are left out, whatever they are.
/// </summary>
public sealed class OnnxGraph
{
    private OnnxGraph(ModelProto proto, string source, int opset, List<OnnxInput> inputs, List<string> outputs, List<OnnxStep> steps,
                      Dictionary<string, OnnxConstant> constants)
    {
        Proto = proto;
        Source = source;
        Opset = opset;
        Inputs = inputs;
        Outputs = outputs;
        Steps = steps;
        Constants = constants;
        Linears = OnnxLinears.Find(this);
    }

    /// <summary>Where the model came from, for messages.</summary>
    public string Source { get; }
    /// <summary>The opset of the default domain.</summary>
    public int Opset { get; }
    /// <summary>The graph inputs the outputs depend on, in the graph's order.</summary>
    public IReadOnlyList<OnnxInput> Inputs { get; }
    /// <summary>The values <see cref="OnnxExecutor.Run"/> returns.</summary>
    public IReadOnlyList<string> Outputs { get; }
    /// <summary>Every MatMul and Gemm of the plan, with its <see cref="OnnxLinear"/> form or why it has none.</summary>
    public IReadOnlyList<OnnxLinearCandidate> Linears { get; }

    internal IReadOnlyList<OnnxStep> Steps { get; }

    /// <summary>The operator of the node that computes <paramref name="value"/>, or null for a graph input or a constant.</summary>
    public string? OperatorOf(string value) => Steps.FirstOrDefault(s => s.Node.Proto.Output.Contains(value))?.Node.OpType;
    /// <summary>The model as read, for writing it back with other weights (<see cref="OnnxExport"/>); never changed.</summary>
    internal ModelProto Proto { get; }
    internal IReadOnlyDictionary<string, OnnxConstant> Constants { get; }

    /// <summary>The ONNX model in the file at <paramref name="path"/>.</summary>
    /// <param name="outputs">The values to compute; null for the graph's outputs.</param>
    public static OnnxGraph Load(string path, IReadOnlyList<string>? outputs = null) =>
        Load(File.ReadAllBytes(path), path, outputs);

    /// <summary>The ONNX model <paramref name="model"/>; <paramref name="source"/> names it in errors.</summary>
    /// <param name="outputs">The values to compute; null for the graph's outputs.</param>
    public static OnnxGraph Load(byte[] model, string source, IReadOnlyList<string>? outputs = null)
    {
        ModelProto proto;
        try { proto = ModelProto.Parser.ParseFrom(model); }
        catch (InvalidProtocolBufferException e)
        {
            throw new InvalidDataException($"{source} is not a complete ONNX model (truncated, or not ONNX): {e.Message}", e);
        }
        var graph = proto.Graph ?? throw new InvalidDataException($"{source} has no graph (truncated, or not ONNX).");
        var opsets = proto.OpsetImport.Where(o => o.Domain is "" or "ai.onnx").Select(o => o.Version).ToList();
        if (opsets.Count != 1) throw new InvalidDataException($"{source} imports {opsets.Count} opsets of the default domain, expected one (truncated?).");
        int opset = (int)opsets[0];
        if (opset < OnnxOps.MinOpset || opset > OnnxOps.MaxOpset)
            throw new NotSupportedException($"{source} uses opset {opset}; opsets {OnnxOps.MinOpset} to {OnnxOps.MaxOpset} are supported.");

        var constants = new Dictionary<string, OnnxConstant>();
        foreach (var t in graph.Initializer)
        {
            var init = t;
            if (!constants.TryAdd(t.Name, new(t.Dims.ToArray(), OnnxTensors.ScalarTypeOf(t.DataType), () => OnnxTensors.ToTensor(init, $"{source}: initializer '{init.Name}'"))))
                throw new InvalidDataException($"{source}: initializer '{t.Name}' is defined twice.");
        }
        // Before IR version 4 initializers were also listed as inputs: those are constants, not inputs to feed.
        var inputs = graph.Input.Where(i => !constants.ContainsKey(i.Name))
            .Select(i => new OnnxInput(i.Name, i.Type?.TensorType?.ElemType ?? 0,
                i.Type?.TensorType?.Shape?.Dim.Select(d => d.ValueCase == TensorShapeProto.Types.Dimension.ValueOneofCase.DimValue && d.DimValue > 0 ? d.DimValue : (long?)null).ToArray()))
            .ToList();
        var known = inputs.Select(i => i.Name).Concat(constants.Keys).ToHashSet();

        var producer = new Dictionary<string, NodeProto>();
        foreach (var node in graph.Node)
            foreach (var o in node.Output.Where(o => o.Length > 0))
                if (known.Contains(o) || !producer.TryAdd(o, node))
                    throw new InvalidDataException($"{source}: value '{o}' is defined twice (node '{node.Name}').");

        var wanted = outputs ?? graph.Output.Select(o => o.Name).ToList();
        if (wanted.Count == 0) throw new InvalidDataException($"{source} has no outputs.");
        foreach (var o in wanted.Where(o => !known.Contains(o) && !producer.ContainsKey(o)))
            throw new ArgumentException($"{source} has no value '{o}' to output; its outputs are {string.Join(", ", graph.Output.Select(v => $"'{v.Name}'"))}.");
        var needed = Needed(source, wanted, producer, known);
        var ordered = TopologicalOrder(source, graph.Node.Where(needed.Contains).ToList(), known);

        var steps = new List<OnnxStep>();
        foreach (var node in ordered)
        {
            if (node.Domain is not ("" or "ai.onnx"))
                throw new NotSupportedException($"{source}: node '{node.Name}' ({node.Domain}.{node.OpType}, opset {opset}): operators of domain '{node.Domain}' are not supported.");
            var n = new OnnxNode(node, opset);
            if (node.OpType == "Constant")
            {
                using var value = OnnxOps.Constant(n);   // checked now; made again for each executor
                constants[node.Output[0]] = new(value.shape, value.dtype, () => OnnxOps.Constant(new OnnxNode(node, opset)));
            }
            else steps.Add(new OnnxStep(n, OnnxOps.Compile(n)));
        }
        var usedInputs = steps.SelectMany(s => s.Reads).Concat(wanted).ToHashSet();
        return new OnnxGraph(proto, source, opset, inputs.Where(i => usedInputs.Contains(i.Name)).ToList(), wanted.ToList(), steps,
            constants.Where(c => usedInputs.Contains(c.Key)).ToDictionary());
    }

    /// <summary>The nodes the outputs depend on; a value nothing defines is an error.</summary>
    private static HashSet<NodeProto> Needed(string source, IReadOnlyList<string> outputs, Dictionary<string, NodeProto> producer, HashSet<string> known)
    {
        var needed = new HashSet<NodeProto>();
        var pending = new Stack<(string Value, string ReadBy)>(outputs.Select(o => (o, "the requested outputs")));
        while (pending.Count > 0)
        {
            var (value, readBy) = pending.Pop();
            if (known.Contains(value)) continue;
            if (!producer.TryGetValue(value, out var node))
                throw new InvalidDataException($"{source}: value '{value}', read by {readBy}, is defined by nothing (a truncated or edited graph?).");
            if (!needed.Add(node)) continue;
            foreach (var i in node.Input.Where(i => i.Length > 0)) pending.Push((i, $"node '{node.Name}'"));
        }
        return needed;
    }

    /// <summary>The nodes in an order where each comes after the producers of its inputs (file order where it already is).</summary>
    private static List<NodeProto> TopologicalOrder(string source, List<NodeProto> nodes, HashSet<string> known)
    {
        var available = new HashSet<string>(known);
        var ordered = new List<NodeProto>(nodes.Count);
        var rest = nodes;
        while (rest.Count > 0)
        {
            var next = new List<NodeProto>();
            foreach (var node in rest)
            {
                if (node.Input.All(i => i.Length == 0 || available.Contains(i)))
                {
                    ordered.Add(node);
                    available.UnionWith(node.Output);
                }
                else next.Add(node);
            }
            if (next.Count == rest.Count) throw new InvalidDataException($"{source}: the graph has a cycle through node '{rest[0].Name}'.");
            rest = next;
        }
        return ordered;
    }
}
