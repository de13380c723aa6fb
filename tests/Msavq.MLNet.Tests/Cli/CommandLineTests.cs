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
    [DataRow("bench", "accuracy")]
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
}
