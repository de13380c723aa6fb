using Google.Protobuf;
using Onnx;

namespace Msavq.MLNet.Models.MiniLm;

/// <summary>
/// The weights of an ONNX graph: its float initializers by name, and the right-hand weights of its MatMul nodes in
/// graph order (a PyTorch export names those numerically, so their order is what says which layer they belong to).
/// </summary>
public sealed class OnnxInitializers
{
    private readonly Dictionary<string, TensorProto> _byName;

    private OnnxInitializers(Dictionary<string, TensorProto> byName, IReadOnlyList<string> matMulWeights)
    {
        _byName = byName;
        MatMulWeights = matMulWeights;
    }

    /// <summary>Names of the initializers that are the second input of a MatMul, in node order.</summary>
    public IReadOnlyList<string> MatMulWeights { get; }

    public static OnnxInitializers Parse(byte[] model, string source)
    {
        ModelProto proto;
        try { proto = ModelProto.Parser.ParseFrom(model); }
        catch (InvalidProtocolBufferException e) { throw new InvalidDataException($"{source} is not an ONNX model: {e.Message}", e); }
        var graph = proto.Graph ?? throw new InvalidDataException($"{source} has no graph.");
        var byName = graph.Initializer.ToDictionary(t => t.Name);
        var matMul = graph.Node.Where(n => n.OpType == "MatMul" && n.Input.Count == 2 && byName.ContainsKey(n.Input[1]))
            .Select(n => n.Input[1]).ToList();
        return new OnnxInitializers(byName, matMul);
    }

    public bool Contains(string name) => _byName.ContainsKey(name);

    /// <summary>The dimensions of a float initializer.</summary>
    public long[] Shape(string name) => Get(name).Dims.ToArray();

    /// <summary>The values of a float initializer, row-major, after checking its shape.</summary>
    public float[] Floats(string name, params long[] shape)
    {
        var t = Get(name);
        if ((TensorProto.Types.DataType)t.DataType != TensorProto.Types.DataType.Float)
            throw new InvalidDataException($"Initializer '{name}' is {(TensorProto.Types.DataType)t.DataType}, expected Float.");
        if (!t.Dims.SequenceEqual(shape))
            throw new InvalidDataException($"Initializer '{name}' has shape [{string.Join(", ", t.Dims)}], expected [{string.Join(", ", shape)}].");
        long count = shape.Aggregate(1L, (a, b) => a * b);
        if (t.FloatData.Count == count) return t.FloatData.ToArray();
        // raw_data is little-endian IEEE 754 (onnx.proto), as is every platform .NET runs TorchSharp on.
        if (t.RawData.Length != count * sizeof(float))
            throw new InvalidDataException($"Initializer '{name}' holds {t.RawData.Length} bytes, expected {count * sizeof(float)}.");
        var values = new float[count];
        Buffer.BlockCopy(t.RawData.ToByteArray(), 0, values, 0, t.RawData.Length);
        return values;
    }

    private TensorProto Get(string name) =>
        _byName.TryGetValue(name, out var t) ? t : throw new InvalidDataException($"The ONNX model has no initializer '{name}'.");
}
