namespace Msavq.MLNet.Models.MiniLm;

/// <summary>Shape of a BERT encoder in the MiniLM family; <see cref="AllMiniLmL6V2"/> is the published sentence model.</summary>
public sealed record MiniLmConfig(int Vocabulary, int Hidden, int Layers, int Heads, int Intermediate, int MaxPositions,
                                  double LayerNormEpsilon, int MaxTokens)
{
    /// <summary>
    /// sentence-transformers/all-MiniLM-L6-v2: BERT uncased vocabulary, 6 layers of width 384 with 12 heads and a
    /// 1,536-wide GELU FFN, LayerNorm ε = 1e-12 (the ONNX graph's constant); sentence-transformers truncates at 256 tokens.
    /// </summary>
    public static MiniLmConfig AllMiniLmL6V2 { get; } = new(30522, 384, 6, 12, 1536, 512, 1e-12, 256);

    public int HeadDim => Hidden / Heads;
}
