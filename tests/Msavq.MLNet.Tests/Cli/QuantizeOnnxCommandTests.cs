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

    [TestMethod]
    [DataRow("--data", "", "--onnx needs --data")]
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
