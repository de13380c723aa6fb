using Msavq.MLNet.Models.MiniLm;
using static TorchSharp.torch;

namespace Msavq.Bench.Curves;

/// <summary>What the MiniLM curves measure with: all embeddings of a sentence list, and each sentence's nearest neighbour.</summary>
public static class MiniLmEmbeddings
{
    private const int BatchSize = 64;

    /// <summary>Normalized sentence embeddings [N, H] in input order, one dispose scope per batch (architecture.md §6).</summary>
    public static Tensor Embed(MiniLmEncoder encoder, IReadOnlyList<string> sentences)
    {
        using var _ = no_grad();
        // Batches of similar length waste little on padding; the rows go back to input order at the end.
        var order = Enumerable.Range(0, sentences.Count).OrderBy(i => sentences[i].Length).ToArray();
        var parts = new List<Tensor>();
        for (int start = 0; start < order.Length; start += BatchSize)
        {
            using var scope = NewDisposeScope();
            parts.Add(encoder.Embed(order.Skip(start).Take(BatchSize).Select(i => sentences[i]).ToList()).MoveToOuterDisposeScope());
        }
        using var sorted = cat(parts, 0);
        foreach (var p in parts) p.Dispose();
        using var index = tensor(order.Select(i => (long)i).ToArray(), device: sorted.device);
        return zeros_like(sorted).index_copy_(0, index, sorted);
    }

    /// <summary>Each sentence's nearest other sentence by cosine (the embeddings are unit vectors).</summary>
    public static Tensor Neighbours(Tensor embeddings)
    {
        using var scope = NewDisposeScope();
        var self = eye(embeddings.shape[0], dtype: ScalarType.Bool, device: embeddings.device);
        return matmul(embeddings, embeddings.t()).masked_fill(self, float.NegativeInfinity).argmax(1).MoveToOuterDisposeScope();
    }
}
