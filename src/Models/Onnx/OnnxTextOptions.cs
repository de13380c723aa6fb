using Microsoft.ML.Tokenizers;
using Msavq.MLNet.Models.Text;

namespace Msavq.MLNet.Models.Onnx;

/// <summary>
/// How an <see cref="OnnxModel"/> reads text: the tokenizer, which graph inputs take the token ids, the attention mask
/// and the token types, which value holds the hidden states, and how they become one vector per sentence. The
/// defaults are a Hugging Face BERT export's names and sentence-transformers' head (mean pooling, unit length).
/// </summary>
public sealed record OnnxTextOptions
{
    public required BertTokenizer Tokenizer { get; init; }

    /// <summary>The graph input of the token ids [batch, tokens].</summary>
    public string InputIdsName { get; init; } = "input_ids";

    /// <summary>The graph input of the attention mask [batch, tokens] (1 = token, 0 = padding); null if the graph has none.</summary>
    public string? AttentionMaskName { get; init; } = "attention_mask";

    /// <summary>The graph input of the token types [batch, tokens], fed zeros (one segment); null if the graph has none.</summary>
    public string? TokenTypeIdsName { get; init; } = "token_type_ids";

    /// <summary>The value to read: a graph output or any value the graph computes.</summary>
    public string OutputName { get; init; } = "last_hidden_state";

    public SentencePooling Pooling { get; init; } = SentencePooling.Mean;

    /// <summary>Whether sentence vectors are scaled to unit length (the contrastive objective compares cosines either way).</summary>
    public bool Normalize { get; init; } = true;

    /// <summary>The longest token sequence, [CLS] and [SEP] included; longer texts are cut (BERT's 512 positions by default).</summary>
    public int MaxTokens { get; init; } = 512;

    /// <summary>Options with a WordPiece tokenizer from a BERT vocabulary file's bytes (vocab.txt).</summary>
    /// <remarks>A model loaded with these options can be saved in a pipeline (<see cref="OnnxModelCheckpoint"/>): the vocabulary goes with it.</remarks>
    public static OnnxTextOptions Bert(byte[] vocabulary, bool lowerCase = true)
    {
        ArgumentNullException.ThrowIfNull(vocabulary);
        using var stream = new MemoryStream(vocabulary);
        var tokenizer = BertTokenizer.Create(stream, new BertOptions { LowerCaseBeforeTokenization = lowerCase });
        return new OnnxTextOptions { Tokenizer = tokenizer, Vocabulary = new BertVocabulary(tokenizer, vocabulary.ToArray(), lowerCase) };
    }

    /// <summary>The vocabulary <see cref="Tokenizer"/> was made from, when <see cref="Bert(byte[], bool)"/> made it.</summary>
    internal BertVocabulary? Vocabulary { get; init; }

    /// <summary>Options with a WordPiece tokenizer from a BERT vocabulary file (vocab.txt).</summary>
    public static OnnxTextOptions Bert(string vocabularyPath, bool lowerCase = true) => Bert(File.ReadAllBytes(vocabularyPath), lowerCase);
}

/// <summary>A tokenizer with the vocabulary file and casing it was made from, so a saved model can rebuild it.</summary>
internal sealed record BertVocabulary(BertTokenizer Tokenizer, byte[] Bytes, bool LowerCase);
