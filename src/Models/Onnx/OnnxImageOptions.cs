namespace Msavq.MLNet.Models.Onnx;

/// <summary>The order of the colour channels a graph expects along its channel axis.</summary>
public enum ImageChannelOrder { Rgb, Bgr }

/// <summary>
/// How an <see cref="OnnxModel"/> reads images: which graph input takes them and which value is the feature vector
/// (by default the graph's only input and only output), the size (by default the input's declared height and width),
/// and how 8-bit pixels p become the graph's values: (p · <see cref="Scale"/> − <see cref="Mean"/>[c]) /
/// <see cref="Std"/>[c] for channel c in <see cref="ChannelOrder"/>. Rows carry an image as its encoded file (PNG,
/// JPEG, … as ML.NET's <c>LoadRawImageBytes</c> gives it; resized to the size) or as raw interleaved RGB bytes of
/// exactly height × width × 3.
/// </summary>
public sealed record OnnxImageOptions
{
    /// <summary>The graph input of the images [batch, 3, height, width]; null for the graph's only input.</summary>
    public string? InputName { get; init; }

    /// <summary>The value to read: a graph output or any value the graph computes; null for the graph's only output. It is flattened per image.</summary>
    public string? OutputName { get; init; }

    /// <summary>Image height in pixels; null for the graph input's declared height.</summary>
    public int? Height { get; init; }

    /// <summary>Image width in pixels; null for the graph input's declared width.</summary>
    public int? Width { get; init; }

    public ImageChannelOrder ChannelOrder { get; init; } = ImageChannelOrder.Rgb;

    /// <summary>Factor on the 0–255 pixel values before the mean is taken off (1/255 for graphs that read [0, 1]).</summary>
    public float Scale { get; init; } = 1f;

    /// <summary>Per-channel value subtracted after scaling, in <see cref="ChannelOrder"/> (zeros by default).</summary>
    public float[] Mean { get; init; } = [0f, 0f, 0f];

    /// <summary>Per-channel divisor after the mean, in <see cref="ChannelOrder"/> (ones by default).</summary>
    public float[] Std { get; init; } = [1f, 1f, 1f];
}
