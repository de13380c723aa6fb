using Microsoft.ML.OnnxRuntime;
using Microsoft.ML.OnnxRuntime.Tensors;
using Msavq.Cli;
using Msavq.MLNet.Tests.Models;
using SkiaSharp;
using Spectre.Console.Testing;

namespace Msavq.MLNet.Tests.Cli;

/// <summary><c>msavq quantize --onnx</c>: an ONNX file the code has never seen, a folder of images, a quantized ONNX file out.</summary>
[TestClass]
public sealed class QuantizeOnnxCommandTests
{
    private static (int Code, string Output) Run(params string[] args)
    {
        var console = new TestConsole();
        console.Profile.Width = 400;
        int code = Program.Run(args, console);
        return (code, console.Output);
    }

    /// <summary>A temporary folder with the tiny conv net and <paramref name="images"/> PNGs of other sizes than its 8 × 6.</summary>
    private static string Workspace(int images)
    {
        string dir = Path.Combine(Path.GetTempPath(), $"msavq-onnx-cli-{Guid.NewGuid():N}");
        Directory.CreateDirectory(Path.Combine(dir, "images"));
        File.WriteAllBytes(Path.Combine(dir, "net.onnx"), OnnxImageModelTests.TinyConvNet());
        var rng = new Random(5);
        for (int i = 0; i < images; i++)
        {
            using var bitmap = new SKBitmap(new SKImageInfo(12 + i, 10, SKColorType.Rgba8888, SKAlphaType.Unpremul));
            for (int y = 0; y < bitmap.Height; y++)
                for (int x = 0; x < bitmap.Width; x++)
                    bitmap.SetPixel(x, y, new SKColor((byte)rng.Next(256), (byte)rng.Next(256), (byte)rng.Next(256)));
            using var image = SKImage.FromBitmap(bitmap);
            using var png = image.Encode(SKEncodedImageFormat.Png, 100);
            File.WriteAllBytes(Path.Combine(dir, "images", $"{i:D2}.png"), png.ToArray());
        }
        File.WriteAllText(Path.Combine(dir, "images", "notes.txt"), "not an image: skipped");
        return dir;
    }

    [TestMethod]
    public void QuantizeOnnx_ImageFolder_WritesAnOnnxFileThatOnnxRuntimeRuns()
    {
        string dir = Workspace(images: 8);
        try
        {
            string output = Path.Combine(dir, "out", "net-q.onnx");
            var (code, text) = Run("quantize", "--onnx", Path.Combine(dir, "net.onnx"), "--data", Path.Combine(dir, "images"),
                                   "--calibration", "5", "--method", "rtn", "--budget", "4.5", "--out", output);
            Assert.AreEqual(0, code, text);
            StringAssert.Contains(text, "3 held-out items");
            StringAssert.Contains(text, "bits per weight (all-in)");
            StringAssert.Contains(text, "net-q.onnx");
            Assert.IsTrue(File.Exists(output));
            Assert.IsFalse(Directory.EnumerateFiles(Path.GetDirectoryName(output)!).Any(f => f != output), "no temporary file is left");
            using var session = new InferenceSession(output);
            var input = new DenseTensor<float>(Enumerable.Range(0, 3 * 8 * 6).Select(i => (float)(i % 7)).ToArray(), new[] { 1, 3, 8, 6 });
            using var results = session.Run(new[] { NamedOnnxValue.CreateFromTensor("pixels", input) });
            Assert.AreEqual(4, results.Single().AsTensor<float>().Length);
        }
        finally { Directory.Delete(dir, recursive: true); }
    }

    /// <summary>
    /// --format msavq: an ML.NET model zip that MsavqPipeline.Load reads back as the typed transformer, which adds each
    /// image's features as a column; the images come from a CSV whose column is named as the graph input (a quoted path
    /// with a comma in it included).
    /// </summary>
    [TestMethod]
    public void QuantizeOnnx_CsvOfImagePaths_FormatMsavq_WritesAPipelineThatAddsTheFeatures()
    {
        string dir = Workspace(images: 6);
        try
        {
            File.Move(Path.Combine(dir, "images", "03.png"), Path.Combine(dir, "images", "a, b.png"));
            var paths = Directory.EnumerateFiles(Path.Combine(dir, "images"), "*.png").Order(StringComparer.Ordinal)
                .Select(f => Path.GetRelativePath(dir, f)).ToList();
            File.WriteAllLines(Path.Combine(dir, "data.csv"),
                new[] { "id,pixels" }.Concat(paths.Select((f, i) => $"{i},\"{f.Replace("\"", "\"\"")}\"")));
            string output = Path.Combine(dir, "net-q.zip");
            var (code, text) = Run("quantize", "--onnx", Path.Combine(dir, "net.onnx"), "--data", Path.Combine(dir, "data.csv"),
                                   "--calibration", "4", "--method", "rtn", "--budget", "4.5", "--format", "msavq", "--out", output);
            Assert.AreEqual(0, code, text);
            StringAssert.Contains(text, "2 held-out items");
            StringAssert.Contains(text, "MsavqPipeline.Load");

            var ml = new Microsoft.ML.MLContext(0);
            var loaded = ml.Msavq().Load(output, out var schema);
            using var model = (MLNet.Models.Onnx.OnnxModel)loaded.LastTransformer.Model;
            Assert.AreEqual("Embedding", loaded.LastTransformer.FeatureColumn);
            var rows = ml.Data.LoadFromEnumerable(paths.Select(p => new ImageRow { Image = File.ReadAllBytes(Path.Combine(dir, p)) }).ToList());
            var features = Microsoft.ML.Data.ColumnCursorExtensions.GetColumn<float[]>(loaded.Transform(rows), "Embedding").ToList();
            Assert.HasCount(6, features);
            Assert.IsTrue(features.All(f => f.Length == 4 && f.All(float.IsFinite)));
        }
        finally { Directory.Delete(dir, recursive: true); }
    }

    /// <summary>A text model the repo has never seen (no token-type input) from a CSV with a text column and partners, out as dequantized ONNX.</summary>
    [TestMethod]
    public void QuantizeOnnx_CsvOfTexts_WithAVocabulary_WritesAnOnnxFileThatOnnxRuntimeRuns()
    {
        string dir = Path.Combine(Path.GetTempPath(), $"msavq-onnx-cli-{Guid.NewGuid():N}");
        Directory.CreateDirectory(dir);
        try
        {
            File.WriteAllBytes(Path.Combine(dir, "encoder.onnx"), TinyOnnxEncoder.Build());
            File.WriteAllBytes(Path.Combine(dir, "vocab.txt"), TinyOnnxEncoder.Vocabulary);
            string[] lines = { "loading checks the graph .", "once", "the graph", "checks once .", "the graph checks", "loading", "once the graph .", "graph" };
            File.WriteAllLines(Path.Combine(dir, "pairs.csv"),
                new[] { "text,next" }.Concat(lines.Select((l, i) => $"\"{l}\",{lines[(i + 3) % lines.Length]}")));
            string output = Path.Combine(dir, "encoder-q.onnx");
            var (code, text) = Run("quantize", "--onnx", Path.Combine(dir, "encoder.onnx"), "--data", Path.Combine(dir, "pairs.csv"),
                                   "--vocab", Path.Combine(dir, "vocab.txt"), "--calibration", "6", "--method", "rtn", "--budget", "4.5", "--out", output);
            Assert.AreEqual(0, code, text);
            StringAssert.Contains(text, "1 held-out items");
            using var session = new InferenceSession(output);
            var ids = new DenseTensor<long>(new long[] { 2, 5, 6, 3 }, new[] { 1, 4 });
            var mask = new DenseTensor<long>(new long[] { 1, 1, 1, 1 }, new[] { 1, 4 });
            using var results = session.Run(new[] { NamedOnnxValue.CreateFromTensor("input_ids", ids), NamedOnnxValue.CreateFromTensor("attention_mask", mask) });
            Assert.AreEqual(4 * TinyOnnxEncoder.Width, results.Single().AsTensor<float>().Length);
        }
        finally { Directory.Delete(dir, recursive: true); }
    }

    [TestMethod]
    [DataRow("--data", "", "--onnx needs --data")]
    [DataRow("--data", "nocolumn.csv", "no column named 'pixels'")]
    [DataRow("--data", "missing.csv", "does not exist")]
    [DataRow("--data", "ragged.csv", "record 3 has 1 fields")]
    [DataRow("--format", "msavq", "--out OUT.zip")]
    [DataRow("--out", "x.zip", "--out OUT.onnx")]
    [DataRow("--format", "int3", "--format must be")]
    [DataRow("--mean", "1,2", "--mean takes three")]
    [DataRow("--data", "lines.txt", "--vocab")]
    public void QuantizeOnnx_BadInput_IsOneLineBeforeAnyWork(string option, string value, string expected)
    {
        string dir = Workspace(images: 2);
        try
        {
            File.WriteAllText(Path.Combine(dir, "lines.txt"), "one line\nanother line\n");
            File.WriteAllText(Path.Combine(dir, "nocolumn.csv"), "file\nimages/00.png\n");
            File.WriteAllText(Path.Combine(dir, "missing.csv"), "image\nimages/00.png\nimages/none.png\n");
            File.WriteAllText(Path.Combine(dir, "ragged.csv"), "id,image\n0,images/00.png\n1\n");
            var args = new Dictionary<string, string>
            {
                ["--onnx"] = Path.Combine(dir, "net.onnx"), ["--data"] = Path.Combine(dir, "images"), ["--out"] = Path.Combine(dir, "q.onnx"),
            };
            if (value.Length == 0) args.Remove(option);
            else args[option] = option == "--data" ? Path.Combine(dir, value) : option == "--out" ? Path.Combine(dir, value) : value;
            var (code, text) = Run(new[] { "quantize" }.Concat(args.SelectMany(a => new[] { a.Key, a.Value })).ToArray());
            Assert.AreNotEqual(0, code);
            StringAssert.Contains(text, expected);
            Assert.IsFalse(text.Contains("   at "), text);
            Assert.IsFalse(File.Exists(Path.Combine(dir, "q.onnx")));
        }
        finally { Directory.Delete(dir, recursive: true); }
    }
}
