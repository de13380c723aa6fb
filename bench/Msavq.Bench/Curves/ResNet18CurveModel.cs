using Microsoft.ML;
using Microsoft.ML.Data;
using Msavq.MLNet;
using Msavq.MLNet.Calibration;
using Msavq.MLNet.Models;
using Msavq.MLNet.Models.Onnx;
using SkiaSharp;
using static TorchSharp.torch;

namespace Msavq.Bench.Curves;

/// <summary>
/// ML.NET's pretrained ResNet18 featurizer (NuGet Microsoft.ML.DnnImageFeaturizer.ResNet18, an ONNX file nobody here
/// trained) through <see cref="OnnxModel"/>, on real photographs of clothes: Fashion-MNIST from Debian's
/// dataset-fashion-mnist (28 × 28 grey, resized to 224 × 224). Metrics per evaluation image: cosine of its quantized to
/// its FP feature vector, and leave-one-out 1-NN classification (is the nearest other image, by feature cosine, of
/// its class?). The FP model's 1-NN accuracy is the reference row.
/// </summary>
public sealed class ResNet18CurveModel : ICurveModel
{
    /// <summary>Where Debian's package puts the data (bench/scripts/install-image-data.sh installs it).</summary>
    public const string DataFolder = "/usr/share/datasets/fashion-mnist";

    private const int Batch = 32;
    private readonly OnnxModel _model;
    private readonly List<byte[]> _images;   // PNG files, decoded and resized by the model as a user's would be
    private readonly long[] _labels;
    private readonly Tensor _reference;
    private readonly (byte[] Pixels, long[] Labels) _train;
    private readonly int _calibrationImages;

    /// <param name="validation">The first half of Fashion-MNIST's test set (tuning) or its second half (the curves).</param>
    public ResNet18CurveModel(bool validation, int images, int calibrationImages)
    {
        EnsureData();
        string models = Path.Combine(AppContext.BaseDirectory, "DnnImageModels", "ResNet18Onnx", "ResNet18.onnx");
        _model = OnnxModel.Load(models, Options);
        var (pixels, labels) = Read("t10k");
        int half = labels.Length / 2, start = validation ? 0 : half;
        int n = Math.Min(images, half);
        _images = Enumerable.Range(start, n).Select(i => Png(pixels, i)).ToList();
        _labels = labels.Skip(start).Take(n).ToArray();
        _reference = Features(_model);
        _train = Read("train");
        _calibrationImages = calibrationImages;
        using var scope = NewDisposeScope();
        FullPrecision = $"full precision: 1-NN accuracy {Knn(_reference).Average():P1} over {n} images";
    }

    /// <summary>The package's preprocessing (BGR, mean image), with the mean image's per-channel means.</summary>
    public static OnnxImageOptions Options => new() { ChannelOrder = ImageChannelOrder.Bgr, Mean = [103.0626f, 115.9029f, 123.1516f] };

    public string Key => "resnet18";
    public string Title => "ResNet18 featurizer (Fashion-MNIST)";
    public IQuantizableModel Model => _model;
    public CurveMetric Primary => Metrics[0];
    public IReadOnlyList<CurveMetric> Metrics { get; } = new[] { new CurveMetric("cosine", false, "F4"), new CurveMetric("knn", false, "P1") };
    public bool ScoreRows => false;
    public string? FullPrecision { get; }

    /// <summary>
    /// Every convolution but the 7 × 7 stem, whose 3·7·7 = 147 input columns no vector dimension divides (9,408 weights,
    /// 0.08 % of the model; CNN quantization papers keep the first layer in full precision too). Every method gets
    /// the same layers.
    /// </summary>
    private string[] Layers => _model.Graph.Layers.Where(l => l.InFeatures % 4 == 0).Select(l => l.Name).ToArray();

    /// <summary>Draw s: a seeded choice of training images (PNG, 28 × 28), disjoint from every evaluation image.</summary>
    public CalibrationCollector Collector(MLContext ml, out IDataView rows, int seed)
    {
        var rng = new Random(1009 + 7919 * seed);
        var chosen = Enumerable.Range(0, _train.Labels.Length).OrderBy(_ => rng.Next()).Take(_calibrationImages).ToList();
        rows = ml.Data.LoadFromEnumerable(chosen.Select(i => new ImageRow { Image = Png(_train.Pixels, i) }).ToList());
        return ml.Msavq().CollectCalibration(new CalibrationCollector.Options
        {
            Model = _model, ImageColumnName = nameof(ImageRow.Image), TextColumnName = null, AnswerColumnName = null,
            Mode = CalibrationMode.OneShot, BatchSize = 16, LayerNames = Layers,
        });
    }

    public Dictionary<string, double[]> Evaluate(IQuantizableModel quantized)
    {
        using var scope = NewDisposeScope();
        var f = Features((OnnxModel)quantized);
        return new Dictionary<string, double[]>
        {
            ["cosine"] = (f * _reference).sum(1).to(ScalarType.Float64).cpu().data<double>().ToArray(),
            ["knn"] = Knn(f),
        };
    }

    /// <summary>Unit feature vectors [N, 512] of the evaluation images.</summary>
    private Tensor Features(OnnxModel model)
    {
        using var _ = no_grad();
        var parts = new List<Tensor>();
        using var scope = NewDisposeScope();
        for (int start = 0; start < _images.Count; start += Batch)
            parts.Add(model.EmbedImages(_images.Skip(start).Take(Batch).ToList()));
        return nn.functional.normalize(cat(parts, 0), p: 2, dim: 1).MoveToOuterDisposeScope();
    }

    /// <summary>Per image, 1 when its nearest other image by cosine has its class.</summary>
    private double[] Knn(Tensor unit)
    {
        using var scope = NewDisposeScope();
        var self = eye(unit.shape[0], dtype: ScalarType.Bool, device: unit.device);
        var nearest = matmul(unit, unit.t()).masked_fill(self, float.NegativeInfinity).argmax(1).cpu().data<long>().ToArray();
        return nearest.Select((j, i) => _labels[j] == _labels[i] ? 1.0 : 0.0).ToArray();
    }

    private static void EnsureData() =>
        InstallScript.Ensure("install-image-data.sh", () => File.Exists(Path.Combine(DataFolder, "t10k-images-idx3-ubyte.gz")), $"Fashion-MNIST in {DataFolder}");

    /// <summary>An IDX pair (images idx3, labels idx1), gzipped, as Debian ships it.</summary>
    private static (byte[] Pixels, long[] Labels) Read(string part)
    {
        static byte[] Gunzip(string path)
        {
            using var gz = new System.IO.Compression.GZipStream(File.OpenRead(path), System.IO.Compression.CompressionMode.Decompress);
            using var ms = new MemoryStream();
            gz.CopyTo(ms);
            return ms.ToArray();
        }
        static int BigEndian(byte[] b, int at) => (b[at] << 24) | (b[at + 1] << 16) | (b[at + 2] << 8) | b[at + 3];
        var images = Gunzip(Path.Combine(DataFolder, $"{part}-images-idx3-ubyte.gz"));
        var labels = Gunzip(Path.Combine(DataFolder, $"{part}-labels-idx1-ubyte.gz"));
        if (BigEndian(images, 0) != 2051 || BigEndian(labels, 0) != 2049 || BigEndian(images, 8) != 28 || BigEndian(images, 12) != 28)
            throw new InvalidDataException($"{DataFolder}/{part}: not Fashion-MNIST's IDX files.");
        int n = BigEndian(images, 4);
        if (BigEndian(labels, 4) != n || images.Length != 16 + n * 784 || labels.Length != 8 + n)
            throw new InvalidDataException($"{DataFolder}/{part}: truncated IDX files.");
        return (images[16..], labels[8..].Select(b => (long)b).ToArray());
    }

    private static SKBitmap Grey(byte[] pixels, int index)
    {
        var bitmap = new SKBitmap(new SKImageInfo(28, 28, SKColorType.Rgba8888, SKAlphaType.Unpremul));
        for (int y = 0; y < 28; y++)
            for (int x = 0; x < 28; x++)
            {
                byte v = pixels[index * 784 + y * 28 + x];
                bitmap.SetPixel(x, y, new SKColor(v, v, v));
            }
        return bitmap;
    }

    /// <summary>Image <paramref name="index"/> as a PNG file, the form a calibration IDataView carries.</summary>
    private static byte[] Png(byte[] pixels, int index)
    {
        using var bitmap = Grey(pixels, index);
        using var image = SKImage.FromBitmap(bitmap);
        using var data = image.Encode(SKEncodedImageFormat.Png, 100);
        return data.ToArray();
    }

    public void Dispose()
    {
        _reference.Dispose();
        _model.Dispose();
    }
}
