using SkiaSharp;
using TorchSharp;
using static TorchSharp.torch;

namespace Msavq.MLNet.Models.Onnx;

/// <summary>
/// Images into a graph's input tensor (<see cref="OnnxImageOptions"/>), and the calibration batches of image models:
/// for a featurizer, each row's image and its mirror image are a positive pair of the in-batch contrastive objective,
/// the label-free objective of self-supervised featurizers (a view of an image should find its other view); for a
/// model that outputs class scores (a classifier, a CTC recognizer), each image labelled with the model's own
/// predictions.
/// </summary>
internal static class OnnxImages
{
    /// <summary>Raw interleaved RGB bytes of <paramref name="image"/> at <paramref name="height"/> × <paramref name="width"/>.</summary>
    /// <param name="image">An encoded image (PNG, JPEG, BMP, GIF, WebP), or raw RGB bytes of exactly that size.</param>
    public static byte[] Rgb(byte[] image, int height, int width, string what)
    {
        if (image is null || image.Length == 0) throw new ArgumentException($"{what} has no image.");
        if (image.Length == height * width * 3) return image;
        using var decoded = SKBitmap.Decode(image)
            ?? throw new ArgumentException($"{what}: {image.Length} bytes are neither an image file SkiaSharp decodes nor {height}×{width}×3 raw RGB bytes.");
        var info = new SKImageInfo(width, height, SKColorType.Rgba8888, SKAlphaType.Unpremul);
        // At the model's size the pixels are taken as they are; otherwise resized bilinearly, as ML.NET's ResizeImages does.
        using var rgba = decoded.Width == width && decoded.Height == height
            ? decoded.Copy(SKColorType.Rgba8888) : decoded.Resize(info, new SKSamplingOptions(SKFilterMode.Linear, SKMipmapMode.None));
        if (rgba is null) throw new ArgumentException($"{what}: the image could not be converted to {width}×{height} RGBA.");
        var bytes = rgba.GetPixelSpan();
        var rgb = new byte[height * width * 3];
        int stride = rgba.RowBytes;
        for (int y = 0; y < height; y++)
            for (int x = 0; x < width; x++)
            {
                int s = y * stride + x * 4, d = (y * width + x) * 3;
                rgb[d] = bytes[s];
                rgb[d + 1] = bytes[s + 1];
                rgb[d + 2] = bytes[s + 2];
            }
        return rgb;
    }

    /// <summary>[N, 3, H, W] graph values of <paramref name="images"/> (raw RGB at the size), on <paramref name="device"/>.</summary>
    public static Tensor ToTensor(IReadOnlyList<byte[]> images, OnnxImageOptions o, Device device)
    {
        int h = o.Height!.Value, w = o.Width!.Value, plane = h * w;
        var values = new float[images.Count * 3 * plane];
        for (int i = 0; i < images.Count; i++)
        {
            var rgb = images[i];
            for (int c = 0; c < 3; c++)
            {
                // Graph channel c holds colour c (RGB) or 2 − c (BGR).
                int colour = o.ChannelOrder == ImageChannelOrder.Rgb ? c : 2 - c;
                float scale = o.Scale / o.Std[c], offset = o.Mean[c] / o.Std[c];
                int dst = (i * 3 + c) * plane;
                for (int p = 0; p < plane; p++) values[dst + p] = rgb[p * 3 + colour] * scale - offset;
            }
        }
        return tensor(values, new long[] { images.Count, 3, h, w }, device: device);
    }

    /// <summary>
    /// The contrastive batch of <paramref name="rows"/>: views 2i (the image) and 2i+1 (its mirror image) label each
    /// other; every position is an image position. <see cref="ImageBatch.Pixels"/> holds the views.
    /// </summary>
    public static ImageBatch Encode(IReadOnlyList<ModelRow> rows, OnnxImageOptions o, Device device)
    {
        if (rows.Count == 0) throw new ArgumentException("Cannot encode an empty batch.", nameof(rows));
        var views = new List<byte[]>();
        var labels = new List<long>();
        for (int i = 0; i < rows.Count; i++)
        {
            var rgb = Rgb(rows[i].Image, o.Height!.Value, o.Width!.Value, $"Row {i}");
            views.Add(rgb);
            views.Add(Mirror(rgb, o.Height!.Value, o.Width!.Value));
            labels.Add(2 * i + 1);
            labels.Add(2 * i);
        }
        using var scope = NewDisposeScope();
        using var image = ((int)TokenModality.Image).ToScalar();
        long n = views.Count;
        return new ImageBatch
        {
            Pixels = ToTensor(views, o, device).MoveToOuterDisposeScope(),
            Tokens = zeros(new long[] { n, 1 }, ScalarType.Int64, device).MoveToOuterDisposeScope(),
            Labels = tensor(labels.ToArray(), new long[] { n, 1 }, device: device).MoveToOuterDisposeScope(),
            Modality = full(new long[] { n, 1 }, image, ScalarType.Byte, device).MoveToOuterDisposeScope(),
            Valid = ones(new long[] { n, 1 }, ScalarType.Float32, device).MoveToOuterDisposeScope(),
        };
    }

    /// <summary>
    /// The batch of <paramref name="rows"/> for a model whose output is class scores: each image once, labelled at every
    /// position with the greedy class of <paramref name="logProbabilities"/> ([N, P, classes]) as the model is now —
    /// the full-precision model when calibration collects (one-shot). No ground truth is needed: the true-label loss is
    /// the model's agreement with its own predictions, and the sampled-label loss (StatisticsCollector) its Fisher.
    /// </summary>
    public static ImageBatch EncodePredicted(IReadOnlyList<ModelRow> rows, OnnxImageOptions o, Device device, Func<Tensor, Tensor> logProbabilities)
    {
        if (rows.Count == 0) throw new ArgumentException("Cannot encode an empty batch.", nameof(rows));
        var images = rows.Select((r, i) => Rgb(r.Image, o.Height!.Value, o.Width!.Value, $"Row {i}")).ToList();
        using var scope = NewDisposeScope();
        using var image = ((int)TokenModality.Image).ToScalar();
        var pixels = ToTensor(images, o, device);
        Tensor labels;
        using (no_grad()) labels = logProbabilities(pixels).argmax(-1);
        var shape = labels.shape;
        return new ImageBatch
        {
            Pixels = pixels.MoveToOuterDisposeScope(),
            Tokens = zeros(new long[] { shape[0], 1 }, ScalarType.Int64, device).MoveToOuterDisposeScope(),
            Labels = labels.MoveToOuterDisposeScope(),
            Modality = full(shape, image, ScalarType.Byte, device).MoveToOuterDisposeScope(),
            Valid = ones(shape, ScalarType.Float32, device).MoveToOuterDisposeScope(),
        };
    }

    private static byte[] Mirror(byte[] rgb, int height, int width)
    {
        var m = new byte[rgb.Length];
        for (int y = 0; y < height; y++)
            for (int x = 0; x < width; x++)
                Buffer.BlockCopy(rgb, (y * width + x) * 3, m, (y * width + width - 1 - x) * 3, 3);
        return m;
    }
}

/// <summary>A calibration batch of images: <see cref="Pixels"/> [N, 3, H, W]; one position per image, or per output position of class scores.</summary>
public sealed class ImageBatch : ModelBatch
{
    public required Tensor Pixels { get; init; }

    public override void Dispose()
    {
        Pixels.Dispose();
        base.Dispose();
    }
}
