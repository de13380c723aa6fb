using System.Text;
using System.Text.Json;
using Msavq.MLNet.Models;

[assembly: ModelFormat(ShapesVlmCheckpoint.FormatName, typeof(ShapesVlmCheckpoint.Reader), Magic = ShapesVlmCheckpoint.MagicText)]

namespace Msavq.MLNet.Models;

/// <summary>
/// The ShapesVlm checkpoint file. Layout (little-endian):
/// <code>
/// "MSAVQVLM"      8 bytes magic
/// version         u32 (= 1)
/// configLength    u32, then the config as UTF-8 JSON (sizes and vocabulary)
/// stateLength     u64, then TorchSharp's state_dict bytes (Module.save)
/// sha256          32 bytes over everything before it
/// </code>
/// Writes go to a temp file that is flushed and renamed, so a crash never leaves half a checkpoint.
/// </summary>
public static class ShapesVlmCheckpoint
{
    /// <summary>The first 8 bytes of every checkpoint.</summary>
    public const string MagicText = "MSAVQVLM";
    private static readonly byte[] Magic = System.Text.Encoding.ASCII.GetBytes(MagicText);
    public const uint Version = 1;
    /// <summary>The name a saved pipeline records for this format (<see cref="IPersistableModel.FormatName"/>).</summary>
    public const string FormatName = "ShapesVlm/1";

    /// <summary>What <see cref="MsavqPipeline.Load"/> calls to rebuild the base model of a saved pipeline.</summary>
    public sealed class Reader : IModelReader
    {
        public IQuantizableModel Read(byte[] bytes, string source) => Load(bytes, source);
    }

    public static void Save(ShapesVlm model, string path)
    {
        byte[] payload = Serialize(model);
        AtomicFile.Write(path, payload);
    }

    public static byte[] Serialize(ShapesVlm model)
    {
        using var state = new MemoryStream();
        using (var sw = new BinaryWriter(state, Encoding.UTF8, leaveOpen: true)) model.save(sw);
        byte[] config = JsonSerializer.SerializeToUtf8Bytes(model.Config);
        return CheckpointContainer.Write(Magic, Version, config, state.GetBuffer().AsSpan(0, (int)state.Length));
    }

    /// <exception cref="FileNotFoundException">No file at <paramref name="path"/>.</exception>
    /// <exception cref="InvalidDataException">The file is not a valid checkpoint; the message names it and why.</exception>
    public static ShapesVlm Load(string path)
    {
        if (!File.Exists(path)) throw new FileNotFoundException($"ShapesVlm checkpoint '{path}' does not exist.", path);
        using var fs = File.OpenRead(path);
        return Load(fs, path);
    }

    public static ShapesVlm Load(Stream stream, string source)
    {
        using var ms = new MemoryStream();
        stream.CopyTo(ms);
        return Load(ms.ToArray(), source);
    }

    public static ShapesVlm Load(byte[] bytes, string source)
    {
        InvalidDataException Bad(string why) => new($"ShapesVlm checkpoint '{source}' is invalid: {why}.");

        var parts = CheckpointContainer.Read(bytes, Magic, Version, "a ShapesVlm checkpoint", "config", "state", int.MaxValue, Bad);
        ShapesVlmConfig config;
        try
        {
            config = JsonSerializer.Deserialize<ShapesVlmConfig>(bytes.AsSpan(parts.HeaderAt, parts.HeaderLength))
                     ?? throw Bad("empty config");
        }
        catch (JsonException e) { throw Bad($"unreadable config ({e.Message})"); }
        long stateAt = parts.PayloadAt;
        ulong stateLength = (ulong)parts.PayloadLength;
        // Before anything is allocated: every field in range, and weights for every parameter the config describes.
        if (config.Problem() is { } problem) throw Bad($"config field {problem.Field} {problem.Why}");
        long parameters = config.ParameterCount();
        if ((ulong)parameters * sizeof(float) > stateLength)
            throw Bad($"the config describes {parameters:N0} parameters ({parameters * sizeof(float):N0} bytes of float32) " +
                      $"but the weights take {stateLength:N0} bytes");

        var model = new ShapesVlm(config);
        try
        {
            using var state = new MemoryStream(bytes, (int)stateAt, (int)stateLength, writable: false);
            using var reader = new BinaryReader(state, Encoding.UTF8, leaveOpen: true);
            model.load(reader);
            if (state.Position != state.Length) throw Bad("trailing bytes after the weights");
        }
        catch (Exception e) when (e is not InvalidDataException)
        {
            model.Dispose();
            throw Bad($"weights do not fit the config ({e.Message})");
        }
        model.eval();
        return model;
    }
}
