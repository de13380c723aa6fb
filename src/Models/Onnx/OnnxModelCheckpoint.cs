using System.Text;
using System.Text.Json;
using Msavq.MLNet.Models;
using Msavq.MLNet.Models.Onnx;
using Msavq.MLNet.Models.Text;

[assembly: ModelFormat(OnnxModelCheckpoint.FormatName, typeof(OnnxModelCheckpoint.Reader), Magic = OnnxModelCheckpoint.MagicText)]

namespace Msavq.MLNet.Models.Onnx;

/// <summary>
/// An <see cref="OnnxModel"/> as bytes, for a saved pipeline (<see cref="MsavqPipeline.Save"/>): the graph with the
/// model's current weights (<see cref="OnnxModel.ToOnnx()"/>), how it reads its input and which layers are its
/// Linears, in the <see cref="CheckpointContainer"/>: magic "MSAVQONX", version 1, the options as JSON header (text or
/// image options, the layer names; a text model's vocabulary), the ONNX model as payload.
/// </summary>
public static class OnnxModelCheckpoint
{
    public const string MagicText = "MSAVQONX";
    private static readonly byte[] Magic = Encoding.ASCII.GetBytes(MagicText);
    public const uint Version = 1;
    /// <summary>The name a saved pipeline records for this format (<see cref="IPersistableModel.FormatName"/>).</summary>
    public const string FormatName = "OnnxModel/1";
    /// <summary>The options hold names and a vocabulary file: more is not an options block.</summary>
    private const int MaxOptionsBytes = 64 << 20;

    /// <summary>What <see cref="MsavqPipeline.Load"/> calls to rebuild the base model of a saved pipeline.</summary>
    public sealed class Reader : IModelReader
    {
        public IQuantizableModel Read(byte[] bytes, string source) => Load(bytes, source);
    }

    /// <exception cref="NotSupportedException">A text model whose tokenizer was not made by <see cref="OnnxTextOptions.Bert(byte[], bool)"/>: nothing says how to rebuild it.</exception>
    public static byte[] Serialize(OnnxModel model)
    {
        ArgumentNullException.ThrowIfNull(model);
        var options = new StoredOptions { Layers = model.QuantizableLayers.Select(l => l.Name).ToArray(), Image = model.Image };
        if (model.Text is { } text)
        {
            if (text.Vocabulary is not { } v || !ReferenceEquals(v.Tokenizer, text.Tokenizer))
                throw new NotSupportedException("This text model's tokenizer was not made from a vocabulary file by OnnxTextOptions.Bert, so it cannot be " +
                                                "saved with the model: load the model with OnnxTextOptions.Bert(vocabulary) options.");
            options = options with
            {
                Text = new StoredText(v.Bytes, v.LowerCase, text.InputIdsName, text.AttentionMaskName, text.TokenTypeIdsName, text.OutputName,
                                      text.Pooling, text.Normalize, text.MaxTokens),
            };
        }
        return CheckpointContainer.Write(Magic, Version, JsonSerializer.SerializeToUtf8Bytes(options), model.ToOnnx());
    }

    /// <exception cref="InvalidDataException">The bytes are not a valid checkpoint; the message names <paramref name="source"/> and why.</exception>
    /// <remarks>Call it outside any dispose scope: the scope would free the parameters (architecture.md §6).</remarks>
    public static OnnxModel Load(byte[] bytes, string source)
    {
        ArgumentNullException.ThrowIfNull(bytes);
        InvalidDataException Bad(string why) => new($"ONNX model checkpoint '{source}' is invalid: {why}.");
        var parts = CheckpointContainer.Read(bytes, Magic, Version, "an ONNX model checkpoint", "options", "ONNX", MaxOptionsBytes, Bad);
        StoredOptions options;
        try { options = JsonSerializer.Deserialize<StoredOptions>(bytes.AsSpan(parts.HeaderAt, parts.HeaderLength)) ?? throw Bad("empty options"); }
        catch (JsonException e) { throw Bad($"unreadable options ({e.Message})"); }
        if ((options.Text is null) == (options.Image is null)) throw Bad("the options describe neither a text nor an image model, or both");
        if (options.Layers is not { Length: > 0 }) throw Bad("no layers are named");
        var onnx = bytes.AsSpan(parts.PayloadAt, parts.PayloadLength).ToArray();
        var layers = new OnnxLayerOptions { Layers = options.Layers };
        try
        {
            if (options.Image is { } image) return OnnxModel.Load(onnx, image, layers, source: source);
            var t = options.Text!;
            var text = OnnxTextOptions.Bert(t.Vocabulary, t.LowerCase) with
            {
                InputIdsName = t.InputIdsName, AttentionMaskName = t.AttentionMaskName, TokenTypeIdsName = t.TokenTypeIdsName,
                OutputName = t.OutputName, Pooling = t.Pooling, Normalize = t.Normalize, MaxTokens = t.MaxTokens,
            };
            return OnnxModel.Load(onnx, text, layers, source: source);
        }
        catch (Exception e) when (e is ArgumentException or NotSupportedException or InvalidOperationException or FormatException)
        {
            throw Bad(e.Message);
        }
    }

    private sealed record StoredOptions
    {
        public string[] Layers { get; init; } = [];
        public StoredText? Text { get; init; }
        public OnnxImageOptions? Image { get; init; }
    }

    private sealed record StoredText(byte[] Vocabulary, bool LowerCase, string InputIdsName, string? AttentionMaskName, string? TokenTypeIdsName,
                                     string OutputName, SentencePooling Pooling, bool Normalize, int MaxTokens);
}
