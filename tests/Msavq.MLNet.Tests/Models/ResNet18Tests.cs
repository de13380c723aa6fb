using Microsoft.ML;
using Microsoft.ML.Data;
using Microsoft.ML.OnnxRuntime;
using Microsoft.ML.OnnxRuntime.Tensors;
using Msavq.MLNet.Calibration;
using Msavq.MLNet.Models.Onnx;
using Msavq.MLNet.Sensitivity;
using SkiaSharp;
using Tensor = TorchSharp.torch.Tensor;
using static TorchSharp.torch;

namespace Msavq.MLNet.Tests.Models;

/// <summary>
/// A real pretrained vision network nobody here trained: ML.NET's ResNet18 featurizer (NuGet
/// Microsoft.ML.DnnImageFeaturizer.ResNet18 0.23.1, a CNTK export at opset 8, 512-d pooled output) through
/// <see cref="OnnxModel"/>: parity with ONNX Runtime, then its convolutions quantized by the chain and written back.
/// </summary>
[TestClass]
public sealed class ResNet18Tests
{
    /// <summary>Where the package's build props copy the model.</summary>
    internal static string ModelPath => Path.Combine(AppContext.BaseDirectory, "DnnImageModels", "ResNet18Onnx", "ResNet18.onnx");

    /// <summary>
    /// What the package's ResNetPreprocess.onnx does to ML.NET's RGB pixel planes: channels reversed to BGR, a mean image
    /// subtracted; here the mean image's per-channel means (the mean image varies by at most ±13 around them).
    /// </summary>
    internal static OnnxImageOptions Options => new() { ChannelOrder = ImageChannelOrder.Bgr, Mean = [103.0626f, 115.9029f, 123.1516f] };

    private static readonly Lazy<OnnxModel> Shared = new(() => OnnxModel.Load(ModelPath, Options));

    /// <summary>A PNG of <paramref name="width"/> × <paramref name="height"/>: a gradient with a few filled shapes (not 224², so it is resized).</summary>
    internal static byte[] Picture(int seed, int width = 300, int height = 200)
    {
        var rng = new Random(seed);
        using var bitmap = new SKBitmap(new SKImageInfo(width, height, SKColorType.Rgba8888, SKAlphaType.Unpremul));
        using (var canvas = new SKCanvas(bitmap))
        {
            using var shader = SKShader.CreateLinearGradient(new SKPoint(0, 0), new SKPoint(width, height),
                new[] { new SKColor((byte)rng.Next(256), (byte)rng.Next(256), (byte)rng.Next(256)), new SKColor((byte)rng.Next(256), (byte)rng.Next(256), (byte)rng.Next(256)) },
                SKShaderTileMode.Clamp);
            using var background = new SKPaint { Shader = shader };
            canvas.DrawRect(0, 0, width, height, background);
            using var paint = new SKPaint { IsAntialias = true };
            for (int i = 0; i < 6; i++)
            {
                paint.Color = new SKColor((byte)rng.Next(256), (byte)rng.Next(256), (byte)rng.Next(256));
                float x = rng.Next(width), y = rng.Next(height), r = 10 + rng.Next(50);
                if (i % 2 == 0) canvas.DrawCircle(x, y, r, paint);
                else canvas.DrawRect(x - r, y - r / 2, 2 * r, r, paint);
            }
        }
        using var image = SKImage.FromBitmap(bitmap);
        using var png = image.Encode(SKEncodedImageFormat.Png, 100);
        return png.ToArray();
    }

    /// <summary>ONNX Runtime's 512-d features of graph-ready pixels [N, 3, 224, 224], one image per run (the file declares batch 1).</summary>
    internal static Tensor OnnxFeatures(InferenceSession session, Tensor pixels)
    {
        var rows = new List<float[]>();
        for (long i = 0; i < pixels.shape[0]; i++)
        {
            var values = pixels[i].contiguous().cpu().data<float>().ToArray();
            using var results = session.Run(new[] { NamedOnnxValue.CreateFromTensor("Input247", new DenseTensor<float>(values, new[] { 1, 3, 224, 224 })) });
            rows.Add(results.Single().AsTensor<float>().ToArray());
        }
        return tensor(rows.SelectMany(r => r).ToArray(), new long[] { rows.Count, rows[0].Length });
    }

    private static Tensor Pixels(IReadOnlyList<byte[]> images) =>
        OnnxImages.ToTensor(images.Select((p, i) => OnnxImages.Rgb(p, 224, 224, $"picture {i}")).ToList(), Shared.Value.Image!, CPU);

    [TestMethod]
    public void Load_ReadsNamesAndSizeFromTheGraph_AndEveryConvolutionIsALayer()
    {
        var model = Shared.Value;
        Assert.AreEqual("Input247", model.Image!.InputName);
        Assert.AreEqual("Pooling395_Output_0", model.Image.OutputName);
        Assert.AreEqual(224, model.Image.Height);
        Assert.AreEqual(224, model.Image.Width);
        Assert.HasCount(22, model.QuantizableLayers, "every one of the file's 22 Conv nodes (7×7, 3×3 and the 1×1 shortcut projections) has one group and a constant kernel");
        Assert.IsTrue(model.Graph.Layers.All(l => l.IsConvolution));
        Assert.AreEqual(64L * 3 * 7 * 7, model.Graph.Layers[0].Weights);
    }

    [TestMethod]
    public void Features_MatchOnnxRuntime()
    {
        var model = Shared.Value;
        var pictures = new[] { Picture(1), Picture(2) };
        using var scope = NewDisposeScope();
        using var _ = no_grad();
        var ours = model.EmbedImages(pictures);
        Assert.AreEqual(512L, ours.shape[1]);
        using var session = new InferenceSession(ModelPath);
        var reference = OnnxFeatures(session, Pixels(pictures));
        double worst = (ours - reference).abs().max().item<float>();
        double scale = reference.abs().max().item<float>();
        Console.WriteLine($"ResNet18: max |TorchSharp − ONNX Runtime| = {worst:E2} (features up to {scale:F2})");
        Assert.IsLessThanOrEqualTo(1e-4, worst, $"max |TorchSharp − ONNX Runtime| = {worst:E2}");
    }

    /// <summary>
    /// The chain a user writes on an image-only IDataView (no text, no answers): three convolutions quantized by GPTQ at
    /// 4 bits, the features stay close, and the export (convolution kernels replaced) runs in ONNX Runtime as the
    /// quantized model does.
    /// </summary>
    [TestMethod]
    public void Chain_QuantizesConvolutions_AndTheExportRunsInOnnxRuntime()
    {
        var ml = new MLContext(seed: 0);
        var model = Shared.Value;
        var layers = new[] { model.QuantizableLayers[1].Name, model.QuantizableLayers[9].Name, model.QuantizableLayers[17].Name };
        var data = ml.Data.LoadFromEnumerable(Enumerable.Range(10, 6).Select(i => new ImageRow { Image = Picture(i) }));
        var chain = ml.Msavq().CollectCalibration(new CalibrationCollector.Options
            {
                Model = model, ImageColumnName = nameof(ImageRow.Image), TextColumnName = null, AnswerColumnName = null,
                LayerNames = layers, BatchSize = 3,
            })
            .Append(ml.Msavq().EstimateSensitivity(new SensitivityEstimator.Options { Method = QuantizationMethod.Gptq, TargetBitsPerWeight = 4.3 }))
            .Append(ml.Msavq().QuantizeMixedPrecisionVq(new MixedPrecisionVqEstimator.Options { ScoreRows = false }))
            .Fit(data);
        var quantizer = chain.LastTransformer;
        CollectionAssert.AreEquivalent(layers, quantizer.Layers.Select(l => l.Layer).ToArray());

        using var quantized = (OnnxModel)quantizer.Model;
        using var scope = NewDisposeScope();
        using var _ = no_grad();
        var pictures = new[] { Picture(40), Picture(41), Picture(42) };
        var fp = model.EmbedImages(pictures);
        var q = quantized.EmbedImages(pictures);
        double cosine = nn.functional.cosine_similarity(fp, q, 1).min().item<float>();
        Console.WriteLine($"GPTQ ~4 bits on three convolutions: worst feature cosine to FP over 3 images = {cosine:F4}");
        Assert.IsGreaterThan(0.98, cosine);
        Assert.IsFalse(q.eq(fp).all().item<bool>(), "the quantized layers changed the features");

        using var session = new InferenceSession(quantized.ToOnnx());
        double worst = (OnnxFeatures(session, Pixels(pictures)) - q).abs().max().item<float>();
        Console.WriteLine($"max |ONNX Runtime(export) − quantized OnnxModel| = {worst:E2}");
        Assert.IsLessThanOrEqualTo(1e-4, worst);
    }

    [TestMethod]
    public void Calibration_RefusesARowThatIsNoImage()
    {
        var ml = new MLContext(seed: 0);
        var data = ml.Data.LoadFromEnumerable(new[] { new ImageRow { Image = Picture(1) }, new ImageRow { Image = [1, 2, 3, 4] } });
        var collector = ml.Msavq().CollectCalibration(new CalibrationCollector.Options
        {
            Model = Shared.Value, ImageColumnName = nameof(ImageRow.Image), TextColumnName = null, AnswerColumnName = null,
        });
        var e = Assert.ThrowsExactly<ArgumentException>(() => collector.Fit(data));
        StringAssert.Contains(e.Message, "Calibration row 1");
        StringAssert.Contains(e.Message, "neither an image file");
    }
}
