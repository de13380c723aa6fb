namespace Msavq.MLNet.Models;

/// <summary>Sizes of a <see cref="ShapesVlm"/>. Defaults give ≈5.5 M parameters with 256-wide LM linears.</summary>
public sealed record ShapesVlmConfig
{
    public int ImageSize { get; init; } = 32;
    /// <summary>Side of an image patch (one image token each).</summary>
    public int PatchSize { get; init; } = 8;
    public int VisionWidth { get; init; } = 192;
    public int VisionLayers { get; init; } = 4;
    public int VisionHeads { get; init; } = 3;
    public int VisionMlp { get; init; } = 768;
    public int TextWidth { get; init; } = 256;
    public int TextLayers { get; init; } = 4;
    public int TextHeads { get; init; } = 4;
    /// <summary>Hidden width of the SwiGLU MLP.</summary>
    public int TextMlp { get; init; } = 704;
    /// <summary>Longest text part (bos + question + answer) the positional table covers.</summary>
    public int MaxTextTokens { get; init; } = 24;
    /// <summary>
    /// Learned row and column embeddings added to the projected image tokens, at the scale of the tokens themselves.
    /// Off in configs that predate it (a checkpoint's JSON without the field loads with it off).
    /// </summary>
    public bool ImageGridPositions { get; init; }
    public IReadOnlyList<string> Vocabulary { get; init; } = ShapesTokenizer.ShapesVocabulary();

    public int ImageTokens => (ImageSize / PatchSize) * (ImageSize / PatchSize);
    public int MaxSequence => MaxTextTokens + ImageTokens;
}
