using Msavq.Cli;
using Spectre.Console.Testing;

namespace Msavq.MLNet.Tests.Cli;

/// <summary>Every command answers --help, and user errors get one clear line and a non-zero exit code.</summary>
[TestClass]
public sealed class CommandLineTests
{
    private static (int Code, string Output) Run(params string[] args)
    {
        var console = new TestConsole();
        console.Profile.Width = 400;
        int code = Program.Run(args, console);
        return (code, console.Output);
    }

    [TestMethod]
    [DataRow("train")]
    [DataRow("eval")]
    [DataRow("quantize")]
    [DataRow("quantize-layer")]
    [DataRow("report")]
    [DataRow("predict")]
    public void Help_DescribesTheOptions(params string[] command)
    {
        var (code, output) = Run(command.Append("--help").ToArray());
        Assert.AreEqual(0, code, output);
        StringAssert.Contains(output, "OPTIONS");
        StringAssert.Contains(output, "--");
    }

    [TestMethod]
    public void Quantize_BadPath_IsOneLine()
    {
        var (code, output) = Run("quantize", "--model", "/nonexistent/model.ckpt");
        Assert.AreNotEqual(0, code);
        StringAssert.Contains(output, "/nonexistent/model.ckpt");
        Assert.IsFalse(output.Contains("   at "), output);
    }

    [TestMethod]
    [DataRow("--budget", "-1", "--budget")]
    [DataRow("--vector-dim", "3", "--vector-dim")]
    [DataRow("--method", "magic", "magic")]
    public void Quantize_BadOptionValue_IsOneLine(string option, string value, string expected)
    {
        var (code, output) = Run("quantize", option, value);
        Assert.AreNotEqual(0, code);
        StringAssert.Contains(output, expected);
        Assert.IsFalse(output.Contains("   at "), output);
    }

    [TestMethod]
    public void Quantize_Cancelled_StopsWith130_AndWritesNothing()
    {
        string path = Path.Combine(Path.GetTempPath(), $"msavq-cancel-{Guid.NewGuid():N}", "m.msavq");
        using var cts = new CancellationTokenSource();
        cts.Cancel();
        var console = new TestConsole();
        int code = Program.Run(new[] { "quantize", "--calibration", "8", "--questions", "8", "--out", path }, console, cts.Token);
        Assert.AreEqual(130, code, console.Output);
        Assert.IsFalse(Directory.Exists(Path.GetDirectoryName(path)) && Directory.EnumerateFiles(Path.GetDirectoryName(path)!).Any());
    }

    [TestMethod]
    public void Quantize_ImpossibleBudget_SaysTheCheapestCost()
    {
        var (code, output) = Run("quantize", "--budget", "0.5", "--calibration", "8", "--questions", "8");
        Assert.AreNotEqual(0, code);
        StringAssert.Contains(output, "No Msavq configuration meets 0.5 bits/weight");
        Assert.IsFalse(output.Contains("   at "), output);
    }

    /// <summary>Issue 19.2: an unknown option or a typo is an error before any work, never a default run.</summary>
    [TestMethod]
    [DataRow("quantize", "--bogus")]
    [DataRow("quantize", "--budjet", "2")]
    [DataRow("predict", "--pipline", "x.zip")]
    [DataRow("quantize-layer", "--wieght", "W.npy")]
    [DataRow("eval", "--question", "5")]
    public void UnknownOption_IsAnError(params string[] args)
    {
        string dir = Path.Combine(Path.GetTempPath(), $"msavq-unknown-{Guid.NewGuid():N}");
        var (code, output) = Run(args.Append("--out").Append(Path.Combine(dir, "x")).ToArray());
        Assert.AreNotEqual(0, code, output);
        StringAssert.Contains(output, "Unknown option");
        Assert.IsFalse(Directory.Exists(dir), "nothing was written");
    }

    /// <summary>
    /// Issue 19.7: a step budget's options need --steps, and the wall-clock budget's options are refused with it (either
    /// would be silently ignored), before any training.
    /// </summary>
    [TestMethod]
    [DataRow("--steps 0", "--steps must be >= 1")]
    [DataRow("--steps 5 --eval-every-steps 0", "--eval-every-steps must be >= 1")]
    [DataRow("--steps 5 --focus-after-steps -1", "--focus-after-steps must be >= 0")]
    [DataRow("--eval-every-steps 5", "--eval-every-steps needs --steps")]
    [DataRow("--focus-after-steps=5", "--focus-after-steps needs --steps")]
    [DataRow("--steps 5 --minutes 1", "--steps and --minutes exclude each other")]
    [DataRow("--steps 5 --eval-every 1", "--steps and --eval-every exclude each other")]
    [DataRow("--steps 5 --focus-after 0", "--steps and --focus-after exclude each other")]
    public void Train_BudgetOptions_AreConsistent(string options, string expected)
    {
        // An unwritable --out: should the options pass, the command fails at once instead of training.
        var (code, output) = Run(["train", .. options.Split(' '), "--out", "/proc/msavq-cannot-write/train"]);
        Assert.AreNotEqual(0, code, output);
        StringAssert.Contains(output, expected);
    }

    /// <summary>Issue 19.6: quantize takes method names in any case, as quantize-layer does.</summary>
    [TestMethod]
    [DataRow("msavq")]
    [DataRow("MSAVQ")]
    [DataRow("Gptvq")]
    public void Quantize_MethodNames_AnyCase(string method)
    {
        // The budget is refused after the method was parsed: the error is about the budget, not the method.
        var (code, output) = Run("quantize", "--method", method, "--budget", "-1");
        Assert.AreNotEqual(0, code);
        StringAssert.Contains(output, "--budget");
        Assert.IsFalse(output.Contains("convert"), output);
    }

    /// <summary>Issue 19.4: output paths are checked before the model is even loaded.</summary>
    [TestMethod]
    [DataRow("--out")]
    [DataRow("--layers-out")]
    [DataRow("--report")]
    public void Quantize_UnwritableOutput_FailsBeforeTheWork(string option)
    {
        var (code, output) = Run("quantize", "--model", "/nonexistent/model.ckpt", option, "/proc/msavq-cannot-write/out.file");
        Assert.AreNotEqual(0, code);
        StringAssert.Contains(output, "/proc/msavq-cannot-write/out.file");
        Assert.IsFalse(output.Contains("model.ckpt"), "outputs are checked before the model is loaded: " + output);
    }

    /// <summary>
    /// Issue 19.5: what the main job writes is what the next command reads: quantize writes a pipeline zip that predict
    /// answers with by default path, the layers alone (--layers-out) predict reads with the base model, and a wrong
    /// file says what it is and what is expected.
    /// </summary>
    [TestMethod]
    public void Quantize_ThenPredict_ReadsWhatWasWritten()
    {
        string dir = Path.Combine(Path.GetTempPath(), $"msavq-main-{Guid.NewGuid():N}");
        string zip = Path.Combine(dir, "m.zip"), layers = Path.Combine(dir, "m.msavq");
        var (code, output) = Run("quantize", "--method", "rtn", "--mode", "OneShot", "--calibration", "8", "--questions", "8",
            "--out", zip, "--layers-out", layers);
        Assert.AreEqual(0, code, output);
        StringAssert.Contains(output, "msavq predict --pipeline");

        var (c1, fromZip) = Run("predict", "--pipeline", zip, "--questions", "3");
        Assert.AreEqual(0, c1, fromZip);
        var (c2, fromLayers) = Run("predict", "--pipeline", layers, "--questions", "3");
        Assert.AreEqual(0, c2, fromLayers);
        Assert.AreEqual(fromZip, fromLayers, "the zip and the layers with the shipped model answer alike");
        Assert.HasCount(3, fromZip.Split('\n', StringSplitOptions.RemoveEmptyEntries));

        string text = Path.Combine(dir, "notes.txt");
        File.WriteAllText(text, "not a model");
        var (c3, wrong) = Run("predict", "--pipeline", text);
        Assert.AreNotEqual(0, c3);
        StringAssert.Contains(wrong, "not a file this library writes");
        StringAssert.Contains(wrong, "saved pipeline");
        Directory.Delete(dir, recursive: true);
    }

    [TestMethod]
    public void Predict_DefaultPipelineMissing_SaysToRunQuantize()
    {
        string cwd = Environment.CurrentDirectory;
        string dir = Path.Combine(Path.GetTempPath(), $"msavq-empty-{Guid.NewGuid():N}");
        Directory.CreateDirectory(dir);
        try
        {
            Environment.CurrentDirectory = dir;
            var (code, output) = Run("predict");
            Assert.AreNotEqual(0, code);
            StringAssert.Contains(output, "msavq quantize");
        }
        finally { Environment.CurrentDirectory = cwd; Directory.Delete(dir, true); }
    }
}
