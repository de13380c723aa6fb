using System.Runtime.InteropServices;
using Onnx;
using static TorchSharp.torch;
using DataType = Onnx.TensorProto.Types.DataType;

namespace Msavq.MLNet.Models.Onnx;

/// <summary>ONNX tensors (initializers, <c>Constant</c> values, attribute tensors) as TorchSharp tensors, and ONNX element types.</summary>
internal static class OnnxTensors
{
    /// <summary>The TorchSharp type of an ONNX element type, or null for the types TorchSharp has no tensors of (strings, complex, unsigned beyond 8 bits, float8, 4-bit).</summary>
    public static ScalarType? ScalarTypeOf(int elementType) => (DataType)elementType switch
    {
        DataType.Float => ScalarType.Float32,
        DataType.Double => ScalarType.Float64,
        DataType.Float16 => ScalarType.Float16,
        DataType.Bfloat16 => ScalarType.BFloat16,
        DataType.Int64 => ScalarType.Int64,
        DataType.Int32 => ScalarType.Int32,
        DataType.Int16 => ScalarType.Int16,
        DataType.Int8 => ScalarType.Int8,
        DataType.Uint8 => ScalarType.Byte,
        DataType.Bool => ScalarType.Bool,
        _ => null,
    };

    public static string NameOf(int elementType) => ((DataType)elementType).ToString();

    /// <summary>The tensor <paramref name="t"/> holds, on the CPU; <paramref name="what"/> names it in errors.</summary>
    public static Tensor ToTensor(TensorProto t, string what)
    {
        if (t.DataLocation == TensorProto.Types.DataLocation.External)
            throw new NotSupportedException($"{what} keeps its values in an external file; ONNX external data is not supported yet.");
        var type = ScalarTypeOf(t.DataType)
                   ?? throw new NotSupportedException($"{what} is of type {NameOf(t.DataType)}, which has no TorchSharp tensor.");
        long[] dims = t.Dims.ToArray();
        long count = dims.Aggregate(1L, (a, b) => a * b);
        if (dims.Any(d => d < 0)) throw new InvalidDataException($"{what} has a negative dimension: [{string.Join(", ", dims)}].");
        if (!t.RawData.IsEmpty)
        {
            // raw_data is little-endian (onnx.proto), as is every platform .NET runs TorchSharp on.
            long size = count * ElementSize((DataType)t.DataType);
            if (t.RawData.Length != size)
                throw new InvalidDataException($"{what} holds {t.RawData.Length} bytes, expected {size} for [{string.Join(", ", dims)}] {NameOf(t.DataType)}.");
            return FromBytes(t.RawData.Span, (DataType)t.DataType, dims);
        }
        switch ((DataType)t.DataType)
        {
            case DataType.Float: return tensor(Checked(t.FloatData.ToArray(), count, what), dims);
            case DataType.Double: return tensor(Checked(t.DoubleData.ToArray(), count, what), dims);
            case DataType.Int64: return tensor(Checked(t.Int64Data.ToArray(), count, what), dims);
        }
        // Every narrower type travels in int32_data: values, or the bit patterns of float16 and bfloat16.
        var ints = Checked(t.Int32Data.ToArray(), count, what);
        return (DataType)t.DataType switch
        {
            DataType.Int32 => tensor(ints, dims),
            DataType.Bool => tensor(ints.Select(v => v != 0).ToArray(), dims),
            DataType.Float16 => tensor(ints.Select(v => (float)BitConverter.UInt16BitsToHalf((ushort)v)).ToArray(), dims).to_type(ScalarType.Float16),
            DataType.Bfloat16 => tensor(ints.Select(v => BitConverter.Int32BitsToSingle(v << 16)).ToArray(), dims).to_type(ScalarType.BFloat16),
            _ => tensor(ints, dims).to_type(type),
        };
    }

    private static T[] Checked<T>(T[] values, long count, string what) => values.LongLength == count ? values
        : throw new InvalidDataException($"{what} holds {values.LongLength} values, expected {count}.");

    private static long ElementSize(DataType type) => type switch
    {
        DataType.Double or DataType.Int64 => 8,
        DataType.Float or DataType.Int32 => 4,
        DataType.Float16 or DataType.Bfloat16 or DataType.Int16 => 2,
        _ => 1,
    };

    private static Tensor FromBytes(ReadOnlySpan<byte> raw, DataType type, long[] dims) => type switch
    {
        DataType.Float => tensor(MemoryMarshal.Cast<byte, float>(raw).ToArray(), dims),
        DataType.Double => tensor(MemoryMarshal.Cast<byte, double>(raw).ToArray(), dims),
        DataType.Int64 => tensor(MemoryMarshal.Cast<byte, long>(raw).ToArray(), dims),
        DataType.Int32 => tensor(MemoryMarshal.Cast<byte, int>(raw).ToArray(), dims),
        DataType.Int16 => tensor(MemoryMarshal.Cast<byte, short>(raw).ToArray(), dims),
        DataType.Int8 => tensor(MemoryMarshal.Cast<byte, sbyte>(raw).ToArray(), dims),
        DataType.Uint8 => tensor(raw.ToArray(), dims),
        DataType.Bool => tensor(raw.ToArray().Select(b => b != 0).ToArray(), dims),
        DataType.Float16 => tensor(MemoryMarshal.Cast<byte, ushort>(raw).ToArray().Select(v => (float)BitConverter.UInt16BitsToHalf(v)).ToArray(), dims)
            .to_type(ScalarType.Float16),
        DataType.Bfloat16 => tensor(MemoryMarshal.Cast<byte, ushort>(raw).ToArray().Select(v => BitConverter.Int32BitsToSingle(v << 16)).ToArray(), dims)
            .to_type(ScalarType.BFloat16),
        _ => throw new InvalidOperationException(type.ToString()),
    };
}
