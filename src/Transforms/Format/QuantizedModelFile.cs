using System.Buffers.Binary;
using System.Security.Cryptography;
using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;

namespace Msavq.MLNet.Format;

/// <summary>What a .msavq file holds: the method and its options, and every quantized layer.</summary>
public sealed record QuantizedModel(string Method, IReadOnlyDictionary<string, string> Options, IReadOnlyList<QuantizedLayer> Layers);

/// <summary>
/// The .msavq file (docs/quantized-format.md): a safetensors container — 8-byte little-endian header length, a JSON
/// header with dtype, shape and data offsets per tensor, raw little-endian data — whose metadata holds our manifest
/// (format version, method, options, layer layouts, SHA-256 per tensor). Python's <c>safetensors</c> opens it.
/// Writes are atomic; reads validate everything and throw only <see cref="MsavqFormatException"/> for bad content.
/// </summary>
public static class QuantizedModelFile
{
    public const int Version = 1;
    public const string FormatName = "msavq";
    /// <summary>Largest header accepted (safetensors' own limit).</summary>
    public const long MaxHeaderBytes = 100_000_000;

    public static void Save(string path, QuantizedModel model) => AtomicFile.Write(path, ToBytes(model));

    public static QuantizedModel Load(string path)
    {
        byte[] bytes;
        try { bytes = File.ReadAllBytes(path); }
        catch (FileNotFoundException) { throw; }
        catch (IOException e) { throw new MsavqFormatException(path, $"cannot be read: {e.Message}", e); }
        return FromBytes(bytes, path);
    }

    public static byte[] ToBytes(QuantizedModel model)
    {
        var blobs = new List<(string Name, Blob Blob)>();
        var layers = new JsonArray();
        for (int i = 0; i < model.Layers.Count; i++)
        {
            var l = model.Layers[i];
            string p = $"layers.{i}.";
            var entry = new JsonObject
            {
                ["name"] = l.Name, ["rows"] = l.Rows, ["columns"] = l.Columns, ["kind"] = l.Kind.ToString().ToLowerInvariant(),
                ["permuted"] = l.ColumnOrder is not null, ["row_scaled"] = l.RowScales is not null,
            };
            if (l.Kind == QuantizedKind.Vector)
            {
                entry["vector_dim"] = l.VectorDim; entry["rows_per_group"] = l.RowsPerGroup;
                entry["columns_per_group"] = l.ColumnsPerGroup; entry["int8_codebooks"] = l.Int8Codebooks;
                entry["codebook_sizes"] = new JsonArray(l.CodebookSizes.Select(k => (JsonNode)k).ToArray());
                blobs.Add((p + "codes", U8(TileCodes.Pack(l))));
                if (l.Int8Codebooks)
                {
                    blobs.Add((p + "codebooks", new Blob("I8", new long[] { l.CodebookValues.Sum(c => (long)c.Length) },
                        l.CodebookValues.SelectMany(c => c).Select(v => unchecked((byte)v)).ToArray())));
                    blobs.Add((p + "codebook_scales", F16(l.CodebookScales)));
                }
                else blobs.Add((p + "codebooks", F16(l.CodebookHalves.SelectMany(c => c).ToArray())));
            }
            else
            {
                entry["bits"] = l.Bits; entry["group_size"] = l.GroupSize; entry["group_map"] = l.GroupOfColumn is not null;
                blobs.Add((p + "codes", U8(BitPacking.Pack(l.Codes, l.Bits))));
                blobs.Add((p + "scales", F16(l.Scales)));
                blobs.Add((p + "zeros", U8(BitPacking.Pack(l.Zeros, l.Bits))));
                if (l.GroupOfColumn is { } map) blobs.Add((p + "group_of_column", U8(BitPacking.Pack(map, MapBits(l.Columns)))));
            }
            // Stored at ⌈log2 n⌉ bits per entry, as the bit accounting counts it.
            if (l.ColumnOrder is { } order) blobs.Add((p + "column_order", U8(BitPacking.Pack(order, MapBits(l.Columns)))));
            if (l.RowScales is { } rs) blobs.Add((p + "row_scales", F16(rs)));
            layers.Add(entry);
        }
        var checksums = new JsonObject();
        foreach (var (name, blob) in blobs) checksums[name] = Convert.ToHexString(SHA256.HashData(blob.Data)).ToLowerInvariant();
        var manifest = new JsonObject
        {
            ["version"] = Version, ["method"] = model.Method,
            ["options"] = new JsonObject(model.Options.Select(kv => KeyValuePair.Create(kv.Key, (JsonNode?)kv.Value))),
            ["layers"] = layers, ["checksums"] = checksums,
        };
        var metadata = new Dictionary<string, string>
        {
            ["format"] = FormatName, ["manifest"] = manifest.ToJsonString(),
            ["manifest_sha256"] = Convert.ToHexString(SHA256.HashData(Encoding.UTF8.GetBytes(manifest.ToJsonString()))).ToLowerInvariant(),
        };
        return SafetensorsContainer.Write(metadata, blobs);
    }

    public static QuantizedModel FromBytes(byte[] bytes, string file)
    {
        try
        {
            return Parse(bytes, file);
        }
        catch (MsavqFormatException) { throw; }
        catch (Exception e) when (e is JsonException or FormatException or InvalidOperationException or ArgumentException
                                    or OverflowException or KeyNotFoundException or IndexOutOfRangeException or InvalidCastException
                                    or NullReferenceException)
        {
            // Anything the checks below did not foresee still says which file and that its content is malformed.
            throw new MsavqFormatException(file, $"malformed content ({e.GetType().Name}: {e.Message})", e);
        }
    }

    private static QuantizedModel Parse(byte[] bytes, string file)
    {
        MsavqFormatException Bad(string reason) => new(file, reason);
        var (meta, blobs) = SafetensorsContainer.Read(bytes, file, MaxHeaderBytes, m =>
        {
            if (!m.TryGetValue("format", out var format) || format != FormatName)
                throw Bad("not an MSAVQ file: the safetensors metadata has no \"format\": \"msavq\" (wrong magic)");
        });
        string manifestText = meta.GetValueOrDefault("manifest") ?? throw Bad("no manifest");
        string manifestSum = Convert.ToHexString(SHA256.HashData(Encoding.UTF8.GetBytes(manifestText))).ToLowerInvariant();
        if (meta.GetValueOrDefault("manifest_sha256") != manifestSum) throw Bad("checksum mismatch in the manifest (the file is corrupted)");
        var manifest = JsonNode.Parse(manifestText)?.AsObject() ?? throw Bad("empty manifest");
        int version = manifest["version"]?.GetValue<int>() ?? throw Bad("manifest has no version");
        if (version != Version) throw Bad($"unknown format version {version} (this library reads version {Version})");

        var checksums = manifest["checksums"]?.AsObject() ?? throw Bad("manifest has no checksums");
        foreach (var (name, blob) in blobs)
        {
            string want = checksums[name]?.GetValue<string>() ?? throw Bad($"tensor '{name}' has no checksum in the manifest");
            if (Convert.ToHexString(SHA256.HashData(blob.Data)).ToLowerInvariant() != want) throw Bad($"checksum mismatch in tensor '{name}' (the file is corrupted)");
        }
        if (checksums.Count != blobs.Count) throw Bad($"the manifest lists {checksums.Count} checksums for {blobs.Count} tensors");

        var layers = new List<QuantizedLayer>();
        var layerNodes = manifest["layers"] as JsonArray ?? throw Bad("manifest has no layers");
        if (layerNodes.Count == 0) throw Bad("the manifest lists no layers (a quantized model has at least one)");
        var used = new HashSet<string>();
        var names = new HashSet<string>();
        for (int i = 0; i < layerNodes.Count; i++)
        {
            var layer = ReadLayer(layerNodes[i]!.AsObject(), blobs, $"layers.{i}.", used, Bad);
            if (!names.Add(layer.Name)) throw Bad($"layer '{layer.Name}' is listed twice (layers must be restored exactly once)");
            layers.Add(layer);
        }
        // Every tensor belongs to exactly the layer whose flags call for it: a column order beside "permuted": false,
        // or the tensors of a layer dropped from the manifest, mean the manifest and the data disagree.
        if (blobs.Keys.FirstOrDefault(n => !used.Contains(n)) is { } stray)
            throw Bad(StrayReason(stray, layerNodes.Count));
        var options = (manifest["options"] as JsonObject ?? new JsonObject()).ToDictionary(kv => kv.Key, kv => kv.Value?.GetValue<string>() ?? "");
        return new QuantizedModel(manifest["method"]?.GetValue<string>() ?? throw Bad("manifest has no method"), options, layers);
    }

    /// <summary>Why a tensor no layer read is there: which flag of its layer says it should not be, or that its layer is gone.</summary>
    private static string StrayReason(string tensor, int layers)
    {
        var m = System.Text.RegularExpressions.Regex.Match(tensor, @"^layers\.(\d+)\.(.+)$");
        if (!m.Success) return $"tensor '{tensor}' belongs to no layer";
        if (!int.TryParse(m.Groups[1].Value, out int i) || i >= layers)
            return $"tensor '{tensor}' belongs to layer {m.Groups[1].Value}, which the manifest does not list (a dropped layer?)";
        string flag = m.Groups[2].Value switch
        {
            "column_order" => "\"permuted\": false", "row_scales" => "\"row_scaled\": false",
            "group_of_column" => "\"group_map\": false", "codebook_scales" => "\"int8_codebooks\": false",
            _ => "its kind and flags",
        };
        return $"tensor '{tensor}' is stored but layer {i}'s manifest entry says {flag}: the flags and the data disagree";
    }

    private static QuantizedLayer ReadLayer(JsonObject e, Dictionary<string, Blob> blobs, string p, HashSet<string> used,
                                            Func<string, MsavqFormatException> bad)
    {
        string name = e["name"]?.GetValue<string>() ?? throw bad($"{p}: no name");
        if (string.IsNullOrWhiteSpace(name)) throw bad($"{p}: empty layer name");
        int rows = e["rows"]!.GetValue<int>(), cols = e["columns"]!.GetValue<int>();
        if (rows < 1 || cols < 1) throw bad($"layer '{name}': shape {rows}×{cols}");
        Blob Need(string t, string dtype)
        {
            if (!blobs.TryGetValue(p + t, out var b)) throw bad($"layer '{name}': tensor '{p + t}' is missing");
            if (b.Dtype != dtype) throw bad($"layer '{name}': tensor '{p + t}' is {b.Dtype}, expected {dtype}");
            used.Add(p + t);
            return b;
        }
        // fp16 values that scale or are weights: NaN or ±∞ would load and predict garbage with NaN scores.
        Half[] Finite(Half[] values, string tensor)
        {
            int at = Array.FindIndex(values, v => !Half.IsFinite(v));
            if (at >= 0) throw bad($"layer '{name}': tensor '{p + tensor}' holds a non-finite value ({values[at]} at {at})");
            return values;
        }
        int[]? order = e["permuted"]!.GetValue<bool>() ? UnpackMap(Need("column_order", "U8").Data, cols, name, bad) : null;
        if (order is not null && (order.Length != cols || order.Distinct().Count() != cols || order.Any(j => j < 0 || j >= cols)))
            throw bad($"layer '{name}': column_order is not a permutation of {cols} columns");
        Half[]? rowScales = e["row_scaled"]!.GetValue<bool>() ? Finite(ToF16(Need("row_scales", "F16").Data), "row_scales") : null;
        if (rowScales is not null && rowScales.Length != rows) throw bad($"layer '{name}': {rowScales.Length} row scales for {rows} rows");
        string kind = e["kind"]!.GetValue<string>();
        if (kind == "vector")
        {
            int d = e["vector_dim"]!.GetValue<int>(), r = e["rows_per_group"]!.GetValue<int>(), c = e["columns_per_group"]!.GetValue<int>();
            if (d < 1 || r < 1 || c < d || c % d != 0 || cols % c != 0 || rows % r != 0)
                throw bad($"layer '{name}': layout d={d}, {r}×{c} tiles does not fit {rows}×{cols}");
            var sizes = (e["codebook_sizes"] as JsonArray ?? throw bad($"layer '{name}': no codebook sizes")).Select(x => x!.GetValue<int>()).ToArray();
            int tiles = rows / r * (cols / c);
            if (sizes.Length != tiles) throw bad($"layer '{name}': {sizes.Length} codebook sizes for {tiles} tiles");
            if (sizes.Any(k => k < 1 || k > 1 << 20)) throw bad($"layer '{name}': codebook size out of range");
            bool int8 = e["int8_codebooks"]!.GetValue<bool>();
            var codesBlob = Need("codes", "U8");
            var codes = TileCodes.Unpack(codesBlob.Data, rows, cols, d, r, c, sizes, name, bad);
            var offsets = new long[tiles + 1];
            for (int t = 0; t < tiles; t++) offsets[t + 1] = offsets[t] + (long)sizes[t] * d;
            var layer = new QuantizedLayer
            {
                Name = name, Rows = rows, Columns = cols, Kind = QuantizedKind.Vector, VectorDim = d, RowsPerGroup = r,
                ColumnsPerGroup = c, CodebookSizes = sizes, Int8Codebooks = int8, Codes = codes, ColumnOrder = order, RowScales = rowScales,
                CodebookValues = int8 ? Split(Need("codebooks", "I8").Data.Select(b => unchecked((sbyte)b)).ToArray(), offsets, name, bad) : Array.Empty<sbyte[]>(),
                CodebookScales = int8 ? Finite(ToF16(Need("codebook_scales", "F16").Data), "codebook_scales") : Array.Empty<Half>(),
                CodebookHalves = int8 ? Array.Empty<Half[]>() : Split(Finite(ToF16(Need("codebooks", "F16").Data), "codebooks"), offsets, name, bad),
            };
            if (int8 && layer.CodebookScales.Length != tiles) throw bad($"layer '{name}': {layer.CodebookScales.Length} codebook scales for {tiles} tiles");
            return layer;
        }
        if (kind != "scalar") throw bad($"layer '{name}': unknown kind '{kind}'");
        int bits = e["bits"]!.GetValue<int>(), g = e["group_size"]!.GetValue<int>();
        if (bits is < 1 or > 16 || g < 1) throw bad($"layer '{name}': {bits} bits, group size {g}");
        int[]? map = e["group_map"]!.GetValue<bool>() ? UnpackMap(Need("group_of_column", "U8").Data, cols, name, bad) : null;
        if (map is not null && (map.Length != cols || map.Any(x => x < 0 || x >= cols))) throw bad($"layer '{name}': group map out of range");
        int groups = map is null ? (cols + g - 1) / g : map.Max() + 1;
        var scales = Finite(ToF16(Need("scales", "F16").Data), "scales");
        if (scales.Length != rows * groups) throw bad($"layer '{name}': {scales.Length} scales for {rows}×{groups} groups");
        var codesB = Need("codes", "U8").Data;
        if (codesB.Length != BitPacking.PackedBytes((long)rows * cols, bits)) throw bad($"layer '{name}': codes have {codesB.Length} bytes, expected {BitPacking.PackedBytes((long)rows * cols, bits)}");
        var zerosB = Need("zeros", "U8").Data;
        if (zerosB.Length != BitPacking.PackedBytes((long)rows * groups, bits)) throw bad($"layer '{name}': zeros have {zerosB.Length} bytes");
        return new QuantizedLayer
        {
            Name = name, Rows = rows, Columns = cols, Kind = QuantizedKind.Scalar, Bits = bits, GroupSize = g, GroupOfColumn = map,
            Scales = scales, Zeros = BitPacking.Unpack(zerosB, (long)rows * groups, bits),
            Codes = BitPacking.Unpack(codesB, (long)rows * cols, bits), ColumnOrder = order, RowScales = rowScales,
        };
    }

    /// <summary>Codes tile by tile (row-major tiles), each at ⌈log2 K_t⌉ bits; within a tile, row-major vectors.</summary>
    private static int MapBits(int columns) => BitCost.CodeBits(columns);

    private static int[] UnpackMap(byte[] data, int columns, string name, Func<string, MsavqFormatException> bad)
    {
        if (data.Length != BitPacking.PackedBytes(columns, MapBits(columns)))
            throw bad($"layer '{name}': a column map of {data.Length} bytes for {columns} columns");
        return BitPacking.Unpack(data, columns, MapBits(columns));
    }


    private static T[][] Split<T>(T[] all, long[] offsets, string name, Func<string, MsavqFormatException> bad)
    {
        if (all.Length != offsets[^1]) throw bad($"layer '{name}': {all.Length} codebook values, the sizes need {offsets[^1]}");
        return Enumerable.Range(0, offsets.Length - 1).Select(t => all[(int)offsets[t]..(int)offsets[t + 1]]).ToArray();
    }

    private static Blob U8(byte[] data) => new("U8", new long[] { data.Length }, data);
    private static Blob F16(Half[] v) { var b = new byte[v.Length * 2]; for (int i = 0; i < v.Length; i++) BinaryPrimitives.WriteHalfLittleEndian(b.AsSpan(i * 2), v[i]); return new("F16", new long[] { v.Length }, b); }
    private static Half[] ToF16(byte[] b) => Enumerable.Range(0, b.Length / 2).Select(i => BinaryPrimitives.ReadHalfLittleEndian(b.AsSpan(i * 2))).ToArray();
}
