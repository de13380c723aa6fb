using Onnx;
using AttributeType = Onnx.AttributeProto.Types.AttributeType;

namespace Msavq.MLNet.Models.Onnx;

/// <summary>
/// One node of the graph as an operator sees it while it is compiled: its attributes, read by type with the
/// defaults of the ONNX spec, and the opset it runs under. Every attribute must be read by the operator that
/// compiles the node (<see cref="EnsureAllRead"/>): an attribute nobody understands is an error at load time, never a
/// silently different result.
/// </summary>
internal sealed class OnnxNode
{
    private readonly Dictionary<string, AttributeProto> _attributes;
    private readonly HashSet<string> _read = new();

    public OnnxNode(NodeProto proto, int opset)
    {
        Proto = proto;
        Opset = opset;
        _attributes = new Dictionary<string, AttributeProto>();
        foreach (var a in proto.Attribute)
            if (!_attributes.TryAdd(a.Name, a)) throw Invalid($"attribute '{a.Name}' is given twice");
    }

    public NodeProto Proto { get; }
    public int Opset { get; }
    public string OpType => Proto.OpType;

    /// <summary>The node's name, or its first output's where the exporter left it unnamed.</summary>
    public string Name => Proto.Name.Length > 0 ? Proto.Name : Proto.Output.FirstOrDefault() ?? "?";

    /// <summary>How errors name the node: its name, operator and opset.</summary>
    public string Describe() => $"node '{Name}' ({OpType}, opset {Opset})";

    /// <summary>How many inputs the node names (trailing optional ones may be left out or given as "").</summary>
    public int InputCount => Proto.Input.Count;

    /// <summary>Whether input <paramref name="i"/> is given (present and not the empty name of an omitted optional input).</summary>
    public bool HasInput(int i) => i < Proto.Input.Count && Proto.Input[i].Length > 0;

    public NotSupportedException Unsupported(string what) => new($"ONNX {Describe()}: {what} is not supported.");

    public InvalidDataException Invalid(string what) => new($"ONNX {Describe()}: {what}.");

    /// <summary>Checks the number of inputs and that the node asks for no more outputs than the operator computes.</summary>
    public void Expect(int minInputs, int maxInputs, int outputs = 1)
    {
        if (Proto.Input.Count < minInputs || Proto.Input.Count > maxInputs)
            throw Invalid($"{Proto.Input.Count} inputs, expected {(minInputs == maxInputs ? $"{minInputs}" : $"{minInputs} to {maxInputs}")}");
        for (int i = 0; i < minInputs; i++)
            if (!HasInput(i)) throw Invalid($"required input {i} is empty");
        if (Proto.Output.Skip(outputs).Any(o => o.Length > 0))
            throw Unsupported($"output '{Proto.Output.Skip(outputs).First(o => o.Length > 0)}' (only the first {outputs} output{(outputs == 1 ? "" : "s")} are computed)");
    }

    public long Int(string name, long fallback) => Get(name, AttributeType.Int)?.I ?? fallback;

    public float Float(string name, float fallback) => Get(name, AttributeType.Float)?.F ?? fallback;

    public string String(string name, string fallback) => Get(name, AttributeType.String)?.S.ToStringUtf8() ?? fallback;

    public long[]? Ints(string name) => Get(name, AttributeType.Ints)?.Ints.ToArray();

    public float[]? Floats(string name) => Get(name, AttributeType.Floats)?.Floats.ToArray();

    public TensorProto? Tensor(string name) => Get(name, AttributeType.Tensor)?.T;

    /// <summary>Whether the node has the attribute (without reading it).</summary>
    public bool Has(string name) => _attributes.ContainsKey(name);

    /// <summary>Throws for the first attribute the operator did not read: it would change the result in a way we do not compute.</summary>
    public void EnsureAllRead()
    {
        var unread = _attributes.Keys.Where(k => !_read.Contains(k)).ToList();
        if (unread.Count > 0) throw Unsupported($"attribute '{unread[0]}'");
    }

    private AttributeProto? Get(string name, AttributeType type)
    {
        _read.Add(name);
        if (!_attributes.TryGetValue(name, out var a)) return null;
        if (a.RefAttrName.Length > 0) throw Unsupported($"attribute '{name}' referring to a function attribute");
        // Old exporters leave the type unset; the field that holds the value is then the one of the expected type.
        if (a.Type != type && a.Type != AttributeType.Undefined)
            throw Invalid($"attribute '{name}' is {a.Type}, expected {type}");
        return a;
    }
}
