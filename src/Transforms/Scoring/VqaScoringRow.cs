using Microsoft.ML.Data;

namespace Msavq.MLNet.Scoring;

/// <summary>What the scoring mapping reads: the image bytes and the question (columns renamed by schema definition).</summary>
public sealed class VqaScoringInput
{
    [VectorType]
    public byte[] Image { get; set; } = Array.Empty<byte>();
    public string Question { get; set; } = "";
}

/// <summary>What the scoring mapping adds.</summary>
public sealed class VqaScoringOutput
{
    /// <summary>The model's greedy answer.</summary>
    public string PredictedAnswer { get; set; } = "";
    /// <summary>The model's probability of that answer.</summary>
    public float Score { get; set; }
}
