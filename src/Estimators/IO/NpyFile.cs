using System.Globalization;
using System.Text;
using System.Text.RegularExpressions;
using static TorchSharp.torch;

namespace Msavq.MLNet.IO;

/// <summary>
/// NumPy .npy files (format 1.0–3.0): little-endian float32/float64/int32/int64, C order. Anything else is refused
/// with a message naming the file and the reason.
/// </summary>
public static partial class NpyFile
{
    private static readonly byte[] Magic = { 0x93, (byte)'N', (byte)'U', (byte)'M', (byte)'P', (byte)'Y' };

    public static Tensor Read(string path)
    {
        if (!File.Exists(path)) throw new FileNotFoundException($"{path}: no such file.", path);
        byte[] bytes = File.ReadAllBytes(path);
        InvalidDataException Bad(string why) => new($"{path}: {why}.");
        if (bytes.Length < 10 || !bytes.AsSpan(0, 6).SequenceEqual(Magic)) throw Bad("not a NumPy .npy file (bad magic)");
        int major = bytes[6];
        int headerLength, offset;
        if (major == 1) { headerLength = BitConverter.ToUInt16(bytes, 8); offset = 10; }
        else if (major is 2 or 3)
        {
            if (bytes.Length < 12) throw Bad("truncated header");
            headerLength = (int)BitConverter.ToUInt32(bytes, 8); offset = 12;
        }
        else throw Bad($"unsupported .npy format version {major}");
        if (headerLength < 0 || offset + headerLength > bytes.Length) throw Bad("truncated header");
        string header = Encoding.Latin1.GetString(bytes, offset, headerLength);

        string descr = HeaderValue().Match(header) is { Success: true } d ? d.Groups[1].Value
            : throw Bad("header has no 'descr'");
        if (FortranOrder().Match(header) is { Success: true } f && f.Groups[1].Value == "True")
            throw Bad("Fortran order is not supported; save with np.ascontiguousarray");
        var shapeMatch = ShapeValue().Match(header);
        if (!shapeMatch.Success) throw Bad("header has no 'shape'");
        long[] shape = shapeMatch.Groups[1].Value.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries)
            .Select(s => long.TryParse(s, NumberStyles.None, CultureInfo.InvariantCulture, out var v) ? v : throw Bad($"bad shape entry '{s}'"))
            .ToArray();
        var (type, size) = descr switch
        {
            "<f4" => (ScalarType.Float32, 4),
            "<f8" => (ScalarType.Float64, 8),
            "<i4" => (ScalarType.Int32, 4),
            "<i8" => (ScalarType.Int64, 8),
            _ => throw Bad($"dtype '{descr}' is not supported (float32, float64, int32, int64, little-endian)"),
        };
        long count = shape.Aggregate(1L, (a, b) => a * b);
        long dataStart = offset + headerLength;
        if (bytes.Length - dataStart != count * size)
            throw Bad($"data holds {bytes.Length - dataStart} bytes, shape ({string.Join(", ", shape)}) of {descr} needs {count * size}");
        var data = bytes.AsSpan((int)dataStart);
        return type switch
        {
            ScalarType.Float32 => tensor(System.Runtime.InteropServices.MemoryMarshal.Cast<byte, float>(data).ToArray(), shape),
            ScalarType.Float64 => tensor(System.Runtime.InteropServices.MemoryMarshal.Cast<byte, double>(data).ToArray(), shape),
            ScalarType.Int32 => tensor(System.Runtime.InteropServices.MemoryMarshal.Cast<byte, int>(data).ToArray(), shape),
            _ => tensor(System.Runtime.InteropServices.MemoryMarshal.Cast<byte, long>(data).ToArray(), shape),
        };
    }

    /// <summary>Writes a float32/float64/int32/int64 tensor as .npy 1.0, atomically.</summary>
    public static void Write(string path, Tensor t)
    {
        var c = t.cpu().contiguous();
        string descr = c.dtype switch
        {
            ScalarType.Float32 => "<f4", ScalarType.Float64 => "<f8", ScalarType.Int32 => "<i4", ScalarType.Int64 => "<i8",
            _ => throw new ArgumentException($"cannot write dtype {c.dtype} to .npy"),
        };
        string shape = c.shape.Length == 1 ? $"({c.shape[0]},)" : $"({string.Join(", ", c.shape)})";
        string dict = $"{{'descr': '{descr}', 'fortran_order': False, 'shape': {shape}, }}";
        int total = 10 + dict.Length + 1;
        int pad = (64 - total % 64) % 64;
        string header = dict + new string(' ', pad) + "\n";
        using var ms = new MemoryStream();
        ms.Write(Magic);
        ms.WriteByte(1); ms.WriteByte(0);
        ms.Write(BitConverter.GetBytes((ushort)header.Length));
        ms.Write(Encoding.Latin1.GetBytes(header));
        ReadOnlySpan<byte> raw = c.dtype switch
        {
            ScalarType.Float32 => System.Runtime.InteropServices.MemoryMarshal.AsBytes(c.data<float>().ToArray().AsSpan()),
            ScalarType.Float64 => System.Runtime.InteropServices.MemoryMarshal.AsBytes(c.data<double>().ToArray().AsSpan()),
            ScalarType.Int32 => System.Runtime.InteropServices.MemoryMarshal.AsBytes(c.data<int>().ToArray().AsSpan()),
            _ => System.Runtime.InteropServices.MemoryMarshal.AsBytes(c.data<long>().ToArray().AsSpan()),
        };
        ms.Write(raw);
        Msavq.MLNet.AtomicFile.Write(path, ms.ToArray());
    }

    [GeneratedRegex(@"'descr'\s*:\s*'([^']*)'")] private static partial Regex HeaderValue();
    [GeneratedRegex(@"'fortran_order'\s*:\s*(True|False)")] private static partial Regex FortranOrder();
    [GeneratedRegex(@"'shape'\s*:\s*\(([^)]*)\)")] private static partial Regex ShapeValue();
}
