using Microsoft.ML.Data;

namespace Msavq.MLNet.Scoring;

/// <summary>What the feature mapping of a text model reads (the column renamed by schema definition).</summary>
public sealed class TextFeatureInput
{
    public string Text { get; set; } = "";
}

/// <summary>What the feature mapping of an image model reads: image bytes, an encoded file or raw RGB (renamed by schema definition).</summary>
public sealed class ImageFeatureInput
{
    [VectorType]
    public byte[] Image { get; set; } = Array.Empty<byte>();
}

/// <summary>What the feature mapping adds: the row's vector (renamed, and sized, by schema definition).</summary>
public sealed class FeatureOutput
{
    [VectorType]
    public float[] Features { get; set; } = Array.Empty<float>();
}
