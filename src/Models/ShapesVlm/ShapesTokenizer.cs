using System.Text;
using Microsoft.ML.Tokenizers;
using Msavq.MLNet.Data;

namespace Msavq.MLNet.Models;

/// <summary>
/// Word-level tokenizer for Shapes-VQA: a Microsoft.ML.Tokenizers WordPiece tokenizer over a closed vocabulary
/// (the vocabulary travels inside each checkpoint, so ids never drift from the weights).
/// </summary>
public sealed class ShapesTokenizer
{
    public const string Pad = "[PAD]", Unknown = "[UNK]", Bos = "[BOS]";

    private readonly WordPieceTokenizer _inner;

    public ShapesTokenizer(IReadOnlyList<string> vocabulary)
    {
        if (vocabulary.Count < 3 || vocabulary[0] != Pad || vocabulary[1] != Unknown || vocabulary[2] != Bos)
            throw new ArgumentException($"The vocabulary must start with {Pad}, {Unknown}, {Bos}.", nameof(vocabulary));
        Vocabulary = vocabulary;
        using var stream = new MemoryStream(Encoding.UTF8.GetBytes(string.Join("\n", vocabulary) + "\n"));
        // Split punctuation off words: "circle?" must become "circle" "?", not one unknown word.
        _inner = WordPieceTokenizer.Create(stream, new WordPieceOptions
        {
            UnknownToken = Unknown, PreTokenizer = PreTokenizer.CreateWordOrPunctuation(),
        });
    }

    public IReadOnlyList<string> Vocabulary { get; }
    public int PadId => 0;
    public int UnknownId => 1;
    public int BosId => 2;

    public IReadOnlyList<int> Encode(string text) => _inner.EncodeToIds(text.ToLowerInvariant());

    public string Decode(int id) => id >= 0 && id < Vocabulary.Count ? Vocabulary[id] : Unknown;

    /// <summary>The default vocabulary: specials, then every word Shapes-VQA uses, in a fixed order.</summary>
    public static IReadOnlyList<string> ShapesVocabulary()
    {
        var words = new List<string> { Pad, Unknown, Bos };
        string[] glue =
        {
            "what", "color", "shape", "is", "the", "object", "objects", "how", "many", "are", "there", "a", "of", "?",
            "yes", "no",
        };
        foreach (var w in glue.Concat(ShapesWorld.Shapes).Concat(ShapesWorld.ShapePlurals).Concat(ShapesWorld.Colors)
                     .Concat(ShapesWorld.Numbers).Concat(ShapesWorld.Relations))
            if (!words.Contains(w)) words.Add(w);
        return words;
    }
}
