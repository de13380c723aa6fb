using Google.Protobuf;
using Onnx;
using DataType = Onnx.TensorProto.Types.DataType;

namespace Msavq.MLNet.Tests.Models;

/// <summary>Small ONNX models for tests, written with OnnxSharp's protobuf types.</summary>
internal sealed class OnnxGraphBuilder(int opset)
{
    private readonly GraphProto _graph = new() { Name = "test" };
    private int _nodes;

    /// <summary>A graph input; a negative dimension is symbolic.</summary>
    public string Input(string name, DataType type, params long[] dims)
    {
        _graph.Input.Add(Value(name, type, dims));
        return name;
    }

    public string Output(string name, DataType type = DataType.Float)
    {
        _graph.Output.Add(new ValueInfoProto { Name = name, Type = new TypeProto { TensorType = new TypeProto.Types.Tensor { ElemType = (int)type } } });
        return name;
    }

    /// <summary>A graph output with its shape (ML.NET's ApplyOnnxModel needs one); a negative dimension is symbolic.</summary>
    public string Output(string name, DataType type, params long[] dims)
    {
        _graph.Output.Add(Value(name, type, dims));
        return name;
    }

    public string Initializer(string name, float[] values, params long[] dims)
    {
        var t = new TensorProto { Name = name, DataType = (int)DataType.Float, Dims = { dims } };
        t.FloatData.Add(values);
        _graph.Initializer.Add(t);
        return name;
    }

    public string Initializer(string name, long[] values, params long[] dims)
    {
        var t = new TensorProto { Name = name, DataType = (int)DataType.Int64, Dims = { dims } };
        t.Int64Data.Add(values);
        _graph.Initializer.Add(t);
        return name;
    }

    /// <summary>A node; its output is named after it unless <paramref name="output"/> says otherwise.</summary>
    public string Node(string op, string[] inputs, string? output = null, params AttributeProto[] attributes)
    {
        string name = $"{op}_{_nodes++}";
        _graph.Node.Add(new NodeProto { Name = name, OpType = op, Input = { inputs }, Output = { output ?? name }, Attribute = { attributes } });
        return output ?? name;
    }

    public static AttributeProto Int(string name, long v) => new() { Name = name, Type = AttributeProto.Types.AttributeType.Int, I = v };
    public static AttributeProto Float(string name, float v) => new() { Name = name, Type = AttributeProto.Types.AttributeType.Float, F = v };
    public static AttributeProto Ints(string name, params long[] v) => new() { Name = name, Type = AttributeProto.Types.AttributeType.Ints, Ints = { v } };
    public static AttributeProto String(string name, string v) => new() { Name = name, Type = AttributeProto.Types.AttributeType.String, S = ByteString.CopyFromUtf8(v) };

    public static AttributeProto Tensor(string name, DataType type, long[] dims, byte[] raw) =>
        new() { Name = name, Type = AttributeProto.Types.AttributeType.Tensor, T = new TensorProto { DataType = (int)type, Dims = { dims }, RawData = ByteString.CopyFrom(raw) } };

    public byte[] Bytes() => new ModelProto
    {
        // The IR version that came with the opset (onnx/docs/Versioning.md).
        IrVersion = opset >= 21 ? 10 : opset >= 19 ? 9 : opset >= 15 ? 8 : 7, ProducerName = "Msavq.MLNet.Tests", Graph = _graph,
        OpsetImport = { new OperatorSetIdProto { Domain = "", Version = opset } },
    }.ToByteArray();

    private static ValueInfoProto Value(string name, DataType type, long[] dims) => new()
    {
        Name = name,
        Type = new TypeProto
        {
            TensorType = new TypeProto.Types.Tensor
            {
                ElemType = (int)type,
                Shape = new TensorShapeProto
                {
                    Dim = { dims.Select((d, i) => d < 0 ? new TensorShapeProto.Types.Dimension { DimParam = $"{name}_{i}" } : new TensorShapeProto.Types.Dimension { DimValue = d }) },
                },
            },
        },
    };
}
