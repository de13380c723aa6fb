namespace Msavq.MLNet.Models;

/// <summary>Sizes of a <see cref="ShapesVlm"/>. Defaults give ≈5.5 M parameters with 256-wide LM linears.</summary>
/// <remarks>
/// Every field is bounded (<see cref="Validate"/>): a checkpoint's config is read from the file, and a crafted one
/// must fail with a message naming the field before anything is allocated, not divide by zero or ask libtorch for
/// terabytes.
/// </remarks>
public sealed record ShapesVlmConfig
{
    /// <summary>Largest width, MLP width or image side accepted; far above what a ShapesVlm needs.</summary>
    public const int MaxWidth = 16384;
    public const int MaxLayers = 256;
    public const int MaxTokens = 4096;
    public const int MaxVocabulary = 1_000_000;
    /// <summary>Largest model accepted (4 GB of float32 weights).</summary>
    public const long MaxParameters = 1L << 30;

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

    /// <summary>Throws <see cref="ArgumentException"/> (its ParamName the field) unless every field is in range.</summary>
    public void Validate()
    {
        if (Problem() is { } p) throw new ArgumentException($"ShapesVlmConfig.{p.Field} {p.Why}.", p.Field);
    }

    /// <summary>The first field out of range and why, or null.</summary>
    public (string Field, string Why)? Problem()
    {
        static string? Range(int value, int min, int max) => value < min || value > max ? $"is {value}; {min} … {max} expected" : null;
        var checks = new (string Field, Func<string?> Why)[]
        {
            (nameof(ImageSize), () => Range(ImageSize, 2, MaxWidth)),
            (nameof(PatchSize), () => Range(PatchSize, 2, ImageSize) ?? (PatchSize % 2 != 0 ? $"is {PatchSize}; it must be even (the stem halves the image)"
                : ImageSize % PatchSize != 0 ? $"is {PatchSize}; it must divide ImageSize {ImageSize}" : null)),
            (nameof(VisionWidth), () => Range(VisionWidth, 1, MaxWidth)),
            (nameof(VisionLayers), () => Range(VisionLayers, 0, MaxLayers)),
            (nameof(VisionHeads), () => Range(VisionHeads, 1, VisionWidth) ?? (VisionWidth % VisionHeads != 0 ? $"is {VisionHeads}; it must divide VisionWidth {VisionWidth}" : null)),
            (nameof(VisionMlp), () => Range(VisionMlp, 1, 4 * MaxWidth)),
            (nameof(TextWidth), () => Range(TextWidth, 1, MaxWidth)),
            (nameof(TextLayers), () => Range(TextLayers, 0, MaxLayers)),
            (nameof(TextHeads), () => Range(TextHeads, 1, TextWidth) ?? (TextWidth % TextHeads != 0 ? $"is {TextHeads}; it must divide TextWidth {TextWidth}" : null)),
            (nameof(TextMlp), () => Range(TextMlp, 1, 4 * MaxWidth)),
            (nameof(MaxTextTokens), () => Range(MaxTextTokens, 2, MaxTokens)),
            (nameof(Vocabulary), VocabularyProblem),
            ("(all sizes)", () => ParameterCount() is var n && n > MaxParameters ? $"together describe {n:N0} parameters; at most {MaxParameters:N0} accepted" : null),
        };
        foreach (var (field, why) in checks)
            if (why() is { } reason) return (field, reason);
        return null;
    }

    private string? VocabularyProblem()
    {
        if (Vocabulary is null) return "is missing";
        if (Vocabulary.Count < 3 || Vocabulary.Count > MaxVocabulary) return $"has {Vocabulary.Count} entries; 3 … {MaxVocabulary} expected";
        if (Vocabulary[0] != ShapesTokenizer.Pad || Vocabulary[1] != ShapesTokenizer.Unknown || Vocabulary[2] != ShapesTokenizer.Bos)
            return $"must start with {ShapesTokenizer.Pad}, {ShapesTokenizer.Unknown}, {ShapesTokenizer.Bos}";
        var seen = new HashSet<string>();
        for (int i = 0; i < Vocabulary.Count; i++)
        {
            string? w = Vocabulary[i];
            if (string.IsNullOrWhiteSpace(w) || w.Any(char.IsWhiteSpace)) return $"entry {i} is empty or holds white space";
            if (!seen.Add(w)) return $"entry {i} ('{w}') appears twice";
        }
        return null;
    }

    /// <summary>
    /// The number of parameters a <see cref="ShapesVlm"/> of this config has (computed from the sizes, nothing
    /// allocated); a checkpoint's weights must hold at least this many float32 values. Assumes fields in range.
    /// </summary>
    public long ParameterCount()
    {
        long vw = VisionWidth, vm = VisionMlp, tw = TextWidth, tm = TextMlp, v = Vocabulary?.Count ?? 0, p = PatchSize / 2;
        long grid = PatchSize > 0 ? ImageSize / PatchSize : 0;
        long vision = (3 * 32 * 9 + 32) + (32 * 64 * 9 + 64) + (64 * vw * p * p + vw) + grid * grid * vw
                      + VisionLayers * (2 * 2 * vw + 4 * (vw * vw + vw) + (vw * vm + vm) + (vm * vw + vw)) + 2 * vw;
        long projector = (vw * tw + tw) + (tw * tw + tw);
        long text = v * tw + (MaxTextTokens + grid * grid) * tw + (ImageGridPositions ? 2 * grid * tw : 0)
                    + TextLayers * (2 * tw + 4 * tw * tw + 3 * tw * tm) + tw + tw * v;
        return vision + projector + text;
    }
}
