using Google.Protobuf;
using Msavq.MLNet.Format;
using Onnx;
using DataType = Onnx.TensorProto.Types.DataType;

namespace Msavq.MLNet.Models.Onnx;

/// <summary>
/// A scalar-quantized layer as ONNX Runtime's <c>com.microsoft.MatMulNBits</c>: B holds each output row's codes in
/// blocks of <c>block_size</c> input columns, packed low bits first; one float scale and one packed uint8 zero point per
/// row and block; the operator computes A·((q − zero)·scale)ᵀ, the weight our format dequantizes to, value for value.
/// </summary>
internal static class MatMulNBits
{
    /// <summary>Whether <paramref name="layer"/> can be written as MatMulNBits, and if not, why.</summary>
    public static bool Supports(QuantizedLayer layer, out string why)
    {
        why = layer.Kind != QuantizedKind.Scalar ? "it is vector-quantized (MatMulNBits holds scalar codes)"
            : layer.Bits is not (2 or 4 or 8) ? $"it has {layer.Bits}-bit codes (MatMulNBits packs 2, 4 or 8)"
            : layer.GroupSize < 16 || (layer.GroupSize & (layer.GroupSize - 1)) != 0 ? $"its groups of {layer.GroupSize} columns are not a power of two ≥ 16 (per-channel grids on a width that is not one, too)"
            : layer.GroupOfColumn is { } map && map.Where((g, j) => g != j / layer.GroupSize).Any() ? "its groups are not contiguous columns (act-order with dynamic groups)"
            : layer.Zeros.Any(z => z < 0 || z >= 1 << layer.Bits) ? "a zero point lies outside the code range"
            : "";
        return why.Length == 0;
    }

    /// <summary>The node computing <paramref name="output"/> = <paramref name="input"/>·Ŵᵀ, and its three initializers, named after <paramref name="prefix"/>.</summary>
    public static (NodeProto Node, TensorProto[] Initializers) Node(QuantizedLayer layer, string name, string input, string output, string prefix)
    {
        if (!Supports(layer, out string why)) throw new NotSupportedException($"Layer '{layer.Name}' cannot be MatMulNBits: {why}.");
        int n = layer.Rows, k = layer.Columns, bits = layer.Bits, block = layer.GroupSize, groups = layer.Groups;
        int blocks = (k + block - 1) / block, blob = block * bits / 8, perByte = 8 / bits;
        if (groups != blocks) throw new InvalidDataException($"Layer '{layer.Name}': {groups} groups for {blocks} blocks of {block} columns.");
        var b = new byte[(long)n * blocks * blob];
        for (int i = 0; i < n; i++)
            for (int j = 0; j < k; j++)
            {
                long at = (long)i * blocks * blob + j / perByte;   // blocks are contiguous, so column j of row i is element j of its row
                b[at] |= (byte)(layer.Codes[(long)i * k + j] << (j % perByte * bits));
            }
        var scales = layer.Scales.Select(s => (float)s).ToArray();          // [n · blocks], row-major like ours
        int zeroBytes = (blocks + perByte - 1) / perByte;
        var zeros = new byte[(long)n * zeroBytes];
        for (int i = 0; i < n; i++)
            for (int g = 0; g < blocks; g++)
                zeros[(long)i * zeroBytes + g / perByte] |= (byte)(layer.Zeros[i * groups + g] << (g % perByte * bits));
        var tensors = new[]
        {
            Bytes($"{prefix}.qweight", b, n, blocks, blob),
            new TensorProto { Name = $"{prefix}.scales", DataType = (int)DataType.Float, Dims = { scales.LongLength }, FloatData = { scales } },
            Bytes($"{prefix}.qzeros", zeros, zeros.LongLength),
        };
        var node = new NodeProto
        {
            Name = name, OpType = "MatMulNBits", Domain = "com.microsoft",
            Input = { input, tensors[0].Name, tensors[1].Name, tensors[2].Name }, Output = { output },
            Attribute = { Int("K", k), Int("N", n), Int("bits", bits), Int("block_size", block) },
        };
        return (node, tensors);
    }

    private static TensorProto Bytes(string name, byte[] data, params long[] dims) =>
        new() { Name = name, DataType = (int)DataType.Uint8, Dims = { dims }, RawData = ByteString.CopyFrom(data) };

    private static AttributeProto Int(string name, long value) =>
        new() { Name = name, Type = AttributeProto.Types.AttributeType.Int, I = value };
}
