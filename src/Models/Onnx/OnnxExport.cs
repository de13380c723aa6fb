using System.Runtime.InteropServices;
using Google.Protobuf;
using Msavq.MLNet.Format;
using Onnx;
using TorchSharp.Modules;
using static TorchSharp.torch;
using DataType = Onnx.TensorProto.Types.DataType;

namespace Msavq.MLNet.Models.Onnx;

/// <summary>
/// The model an <see cref="OnnxGraph"/> was read from, written back with each Linear's weight replaced by a module's —
/// after quantization the dequantized weight the chain evaluated, bit for bit — so ONNX Runtime, and ML.NET's
/// <c>ApplyOnnxModel</c>, run the quantized model. Only the weight constants change, and Gemm's alpha, which the
/// Linear folds into its weight, becomes 1 (where a Gemm's beta is not 1, its bias is written as the Linear holds it,
/// β·C, and beta becomes 1).
/// </summary>
internal static class OnnxExport
{
    /// <param name="pack">
    /// Stored layers to write as <c>com.microsoft.MatMulNBits</c> where they can be (<see cref="MatMulNBits.Supports"/>,
    /// and the layer is a MatMul node); every other layer gets its module's weight as float32.
    /// </param>
    /// <param name="packed">The layers written as MatMulNBits.</param>
    public static byte[] WithWeights(OnnxGraph graph, IReadOnlyList<OnnxLinear> layers, IReadOnlyList<Linear> modules,
                                     IReadOnlyList<QuantizedLayer>? pack, out List<string> packed)
    {
        if (layers.Count != modules.Count) throw new ArgumentException($"{layers.Count} layers but {modules.Count} modules.");
        var proto = graph.Proto.Clone();
        var byName = (pack ?? Array.Empty<QuantizedLayer>()).ToDictionary(l => l.Name);
        foreach (var name in byName.Keys.Where(n => !layers.Any(l => l.Name == n)))
            throw new ArgumentException($"Quantized layer '{name}' is not a layer of {graph.Source}.", nameof(pack));
        packed = new List<string>();
        var removed = new HashSet<string>();
        var tensors = new Dictionary<string, TensorProto>();
        foreach (var t in proto.Graph.Initializer) tensors.TryAdd(t.Name, t);
        foreach (var n in proto.Graph.Node.Where(n => n.OpType == "Constant" && n.Output.Count == 1))
            if (n.Attribute.FirstOrDefault(a => a.Name == "value")?.T is { } value) tensors[n.Output[0]] = value;
        for (int i = 0; i < layers.Count; i++)
        {
            var (layer, module) = (layers[i], modules[i]);
            using var scope = NewDisposeScope();
            var w = module.weight!.detach().to(ScalarType.Float32).cpu();
            if (w.shape[0] != layer.OutFeatures || w.shape[1] != layer.InFeatures)
                throw new InvalidOperationException($"Layer '{layer.Name}': weight [{string.Join(", ", w.shape)}], [{layer.OutFeatures}, {layer.InFeatures}] expected.");
            if (byName.TryGetValue(layer.Name, out var q) && layer.Step.Node.OpType == "MatMul" && MatMulNBits.Supports(q, out _))
            {
                // What ONNX Runtime will compute must be the weight the model ran with, value for value.
                if (q.Rows != layer.OutFeatures || q.Columns != layer.InFeatures
                    || !q.Dequantize().AsSpan().SequenceEqual(w.contiguous().data<float>().ToArray()))
                    throw new ArgumentException($"Quantized layer '{layer.Name}' does not dequantize to the model's weight: pass this model's own quantized layers.", nameof(pack));
                int index = graph.Proto.Graph.Node.IndexOf(layer.Step.Node.Proto);
                var old = proto.Graph.Node[index];
                var (nbits, initializers) = MatMulNBits.Node(q, old.Name, old.Input[0], old.Output[0], layer.Name);
                proto.Graph.Node[index] = nbits;
                proto.Graph.Initializer.Add(initializers);
                removed.Add(layer.Weight);
                packed.Add(layer.Name);
                continue;
            }
            Replace(graph, tensors, layer.Weight, layer.IsConvolution ? w.reshape(graph.Constants[layer.Weight].Shape) : layer.Transposed ? w : w.t(),
                    $"layer '{layer.Name}'");
            if (layer.Step.Node.OpType != "Gemm") continue;
            var node = proto.Graph.Node[graph.Proto.Graph.Node.IndexOf(layer.Step.Node.Proto)];
            SetOne(node, "alpha");
            // The Linear's bias is β·C: written back (and β set to 1) only where β ≠ 1, so a C nothing changed stays as it was.
            if (layer.Bias is { } bias && layer.Beta != 1f && module.bias is { } b)
            {
                Replace(graph, tensors, bias, b.detach().to(ScalarType.Float32).cpu(), $"layer '{layer.Name}' bias");
                SetOne(node, "beta");
            }
        }
        if (packed.Count > 0)
        {
            // The packed weights' float32 constants are read by nothing now (OnnxLinears took only unshared weights).
            foreach (var t in proto.Graph.Initializer.Where(t => removed.Contains(t.Name)).ToList()) proto.Graph.Initializer.Remove(t);
            foreach (var v in proto.Graph.Input.Where(v => removed.Contains(v.Name)).ToList()) proto.Graph.Input.Remove(v);
            foreach (var n in proto.Graph.Node.Where(n => n.OpType == "Constant" && n.Output.Count == 1 && removed.Contains(n.Output[0])).ToList())
                proto.Graph.Node.Remove(n);
            if (!proto.OpsetImport.Any(o => o.Domain == "com.microsoft"))
                proto.OpsetImport.Add(new OperatorSetIdProto { Domain = "com.microsoft", Version = 1 });
        }
        return proto.ToByteArray();
    }

    private static void Replace(OnnxGraph graph, Dictionary<string, TensorProto> tensors, string name, Tensor value, string what)
    {
        if (!tensors.TryGetValue(name, out var t))
            throw new InvalidOperationException($"{graph.Source}: {what} reads '{name}', which is neither an initializer nor a Constant node's value.");
        long[] dims = t.Dims.ToArray();
        if (!dims.SequenceEqual(value.shape))
            throw new InvalidOperationException($"{graph.Source}: {what}: '{name}' is [{string.Join(", ", dims)}], the new value [{string.Join(", ", value.shape)}].");
        var data = value.contiguous().data<float>().ToArray();
        t.DataType = (int)DataType.Float;
        t.FloatData.Clear();
        t.RawData = ByteString.CopyFrom(MemoryMarshal.AsBytes(data.AsSpan()));   // little-endian, as onnx.proto says
    }

    private static void SetOne(NodeProto node, string attribute)
    {
        var a = node.Attribute.FirstOrDefault(x => x.Name == attribute);
        if (a is null) return;   // absent means 1
        a.F = 1f;
    }
}
