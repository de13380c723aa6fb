using TorchSharp;
using static TorchSharp.torch;

namespace Msavq.MLNet.Models.Text;

/// <summary>
/// The calibration objective of a sentence encoder (docs/estimator-chain.md): each row's text and its partner (the
/// row's answer: the next sentence) are sequences 2i and 2i+1 of one batch, and the logits are the scaled cosine
/// similarities of every sentence to every other one, so cross-entropy against the partner's index is the in-batch
/// contrastive (MultipleNegativesRanking) loss. It has non-zero gradients at the pretrained point, unlike a
/// reconstruction of the encoder's own output.
/// </summary>
public static class ContrastivePairs
{
    /// <summary>
    /// Scale of the cosine similarities (1/τ): 20, as sentence-transformers' MultipleNegativesRankingLoss that trained
    /// the MiniLM family.
    /// </summary>
    public const double SimilarityScale = 20.0;

    /// <summary>
    /// The batch of <paramref name="rows"/>: each sequence's label is its partner's index, -100 for a row without
    /// answer; every token is a text token. <paramref name="tokenize"/> gives ids and mask of the sentences.
    /// </summary>
    public static ModelBatch Encode(IReadOnlyList<ModelRow> rows, string model,
                                    Func<IReadOnlyList<string>, (Tensor Tokens, Tensor Mask)> tokenize, Device device)
    {
        if (rows.Count == 0) throw new ArgumentException("Cannot encode an empty batch.", nameof(rows));
        var sentences = new List<string>();
        var labels = new List<long>();
        for (int i = 0; i < rows.Count; i++)
        {
            if (rows[i].Image is { Length: > 0 })
                throw new ArgumentException($"Row {i} has an image; {model} reads text only.");
            int at = sentences.Count;
            sentences.Add(rows[i].Text ?? "");
            if (rows[i].Target is { } partner)
            {
                sentences.Add(partner);
                labels.Add(at + 1);
                labels.Add(at);
            }
            else labels.Add(-100);
        }
        using var scope = NewDisposeScope();
        var (tokens, mask) = tokenize(sentences);
        return new ModelBatch
        {
            Tokens = tokens.MoveToOuterDisposeScope(),
            Labels = tensor(labels.ToArray(), new long[] { labels.Count, 1 }, device: device).MoveToOuterDisposeScope(),
            Modality = zeros(tokens.shape, ScalarType.Byte, device).MoveToOuterDisposeScope(),   // all TokenModality.Text
            Valid = mask.MoveToOuterDisposeScope(),
        };
    }

    /// <summary>
    /// Contrastive logits [N, 1, N] of unit-length embeddings [N, H]: scaled cosine similarity of every sentence to
    /// every other one; a sentence is never its own candidate.
    /// </summary>
    public static Tensor Logits(Tensor embeddings)
    {
        using var scope = NewDisposeScope();
        using var scale = SimilarityScale.ToScalar();
        using var never = (-1e4).ToScalar();
        var similarity = matmul(embeddings, embeddings.t()).mul(scale);
        var self = eye(embeddings.shape[0], dtype: ScalarType.Bool, device: embeddings.device);
        return similarity.masked_fill(self, never).unsqueeze(1).MoveToOuterDisposeScope();
    }
}
