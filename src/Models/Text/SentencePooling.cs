using TorchSharp;
using static TorchSharp.torch;
using F = TorchSharp.torch.nn.functional;

namespace Msavq.MLNet.Models.Text;

/// <summary>How a sentence encoder turns its last hidden states into one vector per sentence.</summary>
public enum SentencePooling
{
    /// <summary>Mean over the real tokens (sentence-transformers' default, all-MiniLM-L6-v2's head).</summary>
    Mean,
    /// <summary>The first token's state ([CLS]).</summary>
    Cls,
    /// <summary>None: the output already is one vector per sentence, [N, H].</summary>
    None,
}

/// <summary>The pooling step shared by the sentence encoders.</summary>
public static class SentencePool
{
    /// <summary>Sentence vectors [N, H] from hidden states [N, T, H] (or [N, H] for <see cref="SentencePooling.None"/>) and the mask [N, T].</summary>
    public static Tensor Apply(Tensor hidden, Tensor mask, SentencePooling pooling, bool normalize)
    {
        using var scope = NewDisposeScope();
        int rank = pooling == SentencePooling.None ? 2 : 3;
        if (hidden.dim() != rank)
            throw new InvalidOperationException($"{pooling} pooling needs a rank-{rank} output, got [{string.Join(", ", hidden.shape)}].");
        Tensor pooled;
        switch (pooling)
        {
            case SentencePooling.Mean:
                var m = mask.to(hidden.dtype).unsqueeze(2);
                // Explicit Scalar (RmsNorm says why: implicit ones are left to the finalizer).
                using (var tiny = 1e-9.ToScalar()) pooled = (hidden * m).sum(1) / m.sum(1).clamp_min(tiny);
                break;
            case SentencePooling.Cls: pooled = hidden.select(1, 0); break;
            default: pooled = hidden; break;
        }
        return (normalize ? F.normalize(pooled, p: 2, dim: 1) : pooled.alias()).MoveToOuterDisposeScope();
    }
}
