using System.Buffers.Binary;
using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;

namespace Msavq.MLNet.Format;

/// <summary>One tensor of a safetensors container: dtype ("U8", "I8", "F16", "I32"), shape, little-endian bytes.</summary>
internal sealed record Blob(string Dtype, long[] Shape, byte[] Data);

/// <summary>
/// The safetensors container (architecture.md §5): an 8-byte little-endian header length, a JSON header with dtype,
/// shape and data offsets per tensor plus string metadata under "__metadata__", then the raw data, 8-byte aligned.
/// Reading applies safetensors' own parser rules: a bounded header, offsets inside the data, no overlaps, no gaps.
/// </summary>
internal static class SafetensorsContainer
{
    public static byte[] Write(IReadOnlyDictionary<string, string> metadata, IReadOnlyList<(string Name, Blob Blob)> blobs)
    {
        var header = new JsonObject { ["__metadata__"] = new JsonObject(metadata.Select(kv => KeyValuePair.Create(kv.Key, (JsonNode?)kv.Value))) };
        long offset = 0;
        foreach (var (name, blob) in blobs)
        {
            header[name] = new JsonObject
            {
                ["dtype"] = blob.Dtype, ["shape"] = new JsonArray(blob.Shape.Select(s => (JsonNode)s).ToArray()),
                ["data_offsets"] = new JsonArray(offset, offset + blob.Data.Length),
            };
            offset += blob.Data.Length;
        }
        var headerBytes = Encoding.UTF8.GetBytes(header.ToJsonString());
        int pad = (8 - headerBytes.Length % 8) % 8;   // data 8-byte aligned, padded with spaces as safetensors does
        var result = new byte[8 + headerBytes.Length + pad + offset];
        BinaryPrimitives.WriteUInt64LittleEndian(result, (ulong)(headerBytes.Length + pad));
        headerBytes.CopyTo(result, 8);
        for (int i = 0; i < pad; i++) result[8 + headerBytes.Length + i] = (byte)' ';
        long at = 8 + headerBytes.Length + pad;
        foreach (var (_, blob) in blobs) { blob.Data.CopyTo(result, at); at += blob.Data.Length; }
        return result;
    }

    /// <summary>
    /// The length of the data a header declares (the largest end offset of its tensors), from the header's JSON alone:
    /// how a reader knows the size of a container before reading its data.
    /// </summary>
    /// <exception cref="MsavqFormatException">The header is not a safetensors header.</exception>
    public static long DeclaredDataLength(ReadOnlySpan<byte> headerJson, string file)
    {
        try
        {
            var header = JsonNode.Parse(headerJson) as JsonObject ?? throw new MsavqFormatException(file, "not an MSAVQ file: the header is not a JSON object");
            long end = 0;
            foreach (var (name, node) in header)
            {
                if (name == "__metadata__") continue;
                var off = node?["data_offsets"] as JsonArray ?? throw new MsavqFormatException(file, $"tensor '{name}' has no data offsets");
                if (off.Count != 2) throw new MsavqFormatException(file, $"tensor '{name}' has {off.Count} data offsets");
                long e = off[1]!.GetValue<long>();
                if (e < 0) throw new MsavqFormatException(file, $"tensor '{name}' has invalid offsets");
                end = Math.Max(end, e);
            }
            return end;
        }
        catch (Exception e) when (e is JsonException or InvalidOperationException or FormatException or NullReferenceException)
        {
            throw new MsavqFormatException(file, $"not an MSAVQ file: unreadable header ({e.GetType().Name})", e);
        }
    }

    /// <param name="checkMetadata">Runs on the metadata before any tensor is read (a file of another kind fails there, by its magic).</param>
    /// <exception cref="MsavqFormatException">Anything that breaks the container's rules, naming the file.</exception>
    public static (Dictionary<string, string> Metadata, Dictionary<string, Blob> Blobs) Read(byte[] bytes, string file, long maxHeaderBytes,
                                                                                              Action<Dictionary<string, string>> checkMetadata)
    {
        MsavqFormatException Bad(string reason) => new(file, reason);
        if (bytes.Length < 8) throw Bad($"truncated: {bytes.Length} bytes, not even a header length");
        ulong headerLength = BinaryPrimitives.ReadUInt64LittleEndian(bytes);
        if (headerLength > (ulong)maxHeaderBytes) throw Bad($"header length {headerLength} exceeds {maxHeaderBytes} (not an MSAVQ file, or corrupted)");
        if (8 + (long)headerLength > bytes.Length) throw Bad($"truncated: header of {headerLength} bytes but the file has {bytes.Length}");
        JsonObject header;
        try { header = JsonNode.Parse(bytes.AsSpan(8, (int)headerLength))?.AsObject() ?? throw Bad("empty header"); }
        catch (JsonException e) { throw new MsavqFormatException(file, "not an MSAVQ file: the header is not JSON", e); }
        var metadata = header["__metadata__"] is JsonObject meta
            ? meta.ToDictionary(kv => kv.Key, kv => kv.Value?.GetValue<string>() ?? "")
            : new Dictionary<string, string>();
        checkMetadata(metadata);

        long dataStart = 8 + (long)headerLength, dataLength = bytes.Length - dataStart;
        var blobs = new Dictionary<string, Blob>();
        var spans = new List<(long Begin, long End, string Name)>();
        foreach (var (name, node) in header)
        {
            if (name == "__metadata__") continue;
            var t = node?.AsObject() ?? throw Bad($"tensor '{name}' has no description");
            string dtype = t["dtype"]?.GetValue<string>() ?? throw Bad($"tensor '{name}' has no dtype");
            int size = dtype switch { "U8" or "I8" => 1, "F16" => 2, "I32" => 4, _ => throw Bad($"tensor '{name}' has unsupported dtype {dtype}") };
            var shape = (t["shape"] as JsonArray ?? throw Bad($"tensor '{name}' has no shape")).Select(x => x!.GetValue<long>()).ToArray();
            var off = t["data_offsets"] as JsonArray ?? throw Bad($"tensor '{name}' has no data offsets");
            if (off.Count != 2) throw Bad($"tensor '{name}' has {off.Count} data offsets");
            long begin = off[0]!.GetValue<long>(), end = off[1]!.GetValue<long>();
            if (shape.Any(s => s < 0)) throw Bad($"tensor '{name}' has a negative dimension");
            long elements = shape.Aggregate(1L, (a, s) => checked(a * s));
            if (begin < 0 || end < begin || end > dataLength)
                throw Bad(end > dataLength ? $"truncated: tensor '{name}' ends at {end} but only {dataLength} data bytes follow the header"
                                           : $"tensor '{name}' has invalid offsets [{begin}, {end})");
            if (checked(elements * size) != end - begin) throw Bad($"tensor '{name}': shape [{string.Join(",", shape)}] × {size} bytes ≠ {end - begin} bytes");
            spans.Add((begin, end, name));
            blobs[name] = new Blob(dtype, shape, bytes.AsSpan((int)(dataStart + begin), (int)(end - begin)).ToArray());
        }
        spans.Sort();
        long expect = 0;
        foreach (var (b, e, n) in spans)
        {
            if (b != expect) throw Bad(b < expect ? $"tensor '{n}' overlaps the previous one" : $"a gap of {b - expect} bytes before tensor '{n}'");
            expect = e;
        }
        if (expect != dataLength) throw Bad($"{dataLength - expect} bytes after the last tensor (corrupted, or not written by this library)");
        return (metadata, blobs);
    }
}
