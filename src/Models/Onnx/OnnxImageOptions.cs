namespace Msavq.MLNet.Models.Onnx;

/// <summary>The order of the colour channels a graph expects along its channel axis.</summary>
public enum ImageChannelOrder { Rgb, Bgr }

/// <summary>
/// What an image model's output value is, which decides the calibration objective (<see cref="OnnxModel.Encode"/>).
/// </summary>
public enum OnnxOutputKind
{
    /// <summary><see cref="Probabilities"/> when a Softmax node makes the value, <see cref="Logits"/> when a LogSoftmax does, else <see cref="Embedding"/>.</summary>
    Auto,
    /// <summary>A feature vector per image: the in-batch contrastive objective between each image and its mirror image.</summary>
    Embedding,
    /// <summary>
    /// Unnormalized class scores (or log-probabilities) along the last axis, one distribution per image or per position
    /// (e.g. a CTC head's [N, T, classes]): the cross-entropy against the model's own greedy predictions, with the
    /// curvature from labels sampled from its distributions (true Fisher).
    /// </summary>
    Logits,
    /// <summary>As <see cref="Logits"/>, for a value that is already a probability distribution along its last axis (after a Softmax).</summary>
    Probabilities,
}

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

    /// <summary>What the output value is; <see cref="OnnxOutputKind.Auto"/> (the default) reads it off the node that makes it, and loading resolves it.</summary>
    public OnnxOutputKind Output { get; init; } = OnnxOutputKind.Auto;
}
