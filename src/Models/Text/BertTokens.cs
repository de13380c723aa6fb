using Microsoft.ML.Tokenizers;
using static TorchSharp.torch;

namespace Msavq.MLNet.Models.Text;

/// <summary>How a BERT-family sentence encoder reads a batch of sentences: WordPiece ids and the padding mask.</summary>
public static class BertTokens
{
    /// <summary>
    /// Token ids [N, T] ([CLS] … [SEP], truncated at <paramref name="maxTokens"/> with [SEP] kept last, zero-padded)
    /// and the mask [N, T] (float32: 1 on tokens, 0 on padding), on <paramref name="device"/>.
    /// </summary>
    public static (Tensor Tokens, Tensor Mask) Encode(BertTokenizer tokenizer, IReadOnlyList<string> sentences, int maxTokens, Device device)
    {
        if (sentences.Count == 0) throw new ArgumentException("Nothing to encode.", nameof(sentences));
        var ids = sentences.Select(s =>
        {
            var t = tokenizer.EncodeToIds(s ?? "").ToList();
            if (t.Count > maxTokens) { t.RemoveRange(maxTokens - 1, t.Count - maxTokens + 1); t.Add(tokenizer.SeparatorTokenId); }
            return t;
        }).ToList();
        int n = ids.Count, width = ids.Max(t => t.Count);
        var tokens = new long[n * width];
        var mask = new float[n * width];
        for (int i = 0; i < n; i++)
            for (int j = 0; j < ids[i].Count; j++) { tokens[i * width + j] = ids[i][j]; mask[i * width + j] = 1; }
        return (tensor(tokens, new long[] { n, width }, device: device), tensor(mask, new long[] { n, width }, device: device));
    }
}
