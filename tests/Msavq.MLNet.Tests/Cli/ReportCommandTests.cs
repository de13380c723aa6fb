using System.Globalization;
using Msavq.Cli;
using Msavq.MLNet.Models;
using Msavq.MLNet.Tests.Models;
using Spectre.Console.Testing;

namespace Msavq.MLNet.Tests.Cli;

/// <summary>
/// Issue 19.11: <c>msavq report</c> plots what it ran (not a committed table), writes each part as it completes, and
/// its page says how far it got. The tiny VLM keeps a run to a fraction of a second; 2.75 is its "2-bit" budget and
/// 2.25 one its 32-column layers cannot meet with scalar methods.
/// </summary>
[TestClass]
public sealed class ReportCommandTests
{
    private string _dir = null!, _model = null!, _out = null!;

    [TestInitialize]
    public void SaveTinyModel()
    {
        _dir = Path.Combine(Path.GetTempPath(), $"msavq-report-{Guid.NewGuid():N}");
        Directory.CreateDirectory(_dir);
        _model = Path.Combine(_dir, "tiny.ckpt");
        _out = Path.Combine(_dir, "report");
        using var model = TinyVlm.Create();
        ShapesVlmCheckpoint.Save(model, _model);
    }

    [TestCleanup]
    public void Remove() => Directory.Delete(_dir, recursive: true);

    private string[] Args(string methods, string budgets) =>
        ["report", "--model", _model, "--methods", methods, "--budgets", budgets, "--questions", "20", "--calibration", "8", "--out", _out];

    /// <summary>The rows of results.csv after the FP row: method, budget, bits (NaN for a refused run), note.</summary>
    private List<(string Method, double Budget, double Bits, string Note)> Runs()
    {
        string path = Path.Combine(_out, "results.csv");
        if (!File.Exists(path)) return new();
        double D(string x) => x.Length == 0 ? double.NaN : double.Parse(x, CultureInfo.InvariantCulture);
        return File.ReadAllLines(path).Skip(1).Where(l => l.Length > 0 && !l.StartsWith("FP32,", StringComparison.Ordinal))
            .Select(l => l.Split(',', 9)).Select(f => (f[0], D(f[1]), D(f[2]), f[8])).ToList();
    }

    /// <summary>All-in bits of one run, recomputed from its rows in layers.csv (weighted by layer size).</summary>
    private double BitsInLayersCsv(string method, double budget)
    {
        var lines = File.ReadAllLines(Path.Combine(_out, "layers.csv"));
        var header = lines[0].Split(',');
        int Col(string name) => Array.IndexOf(header, name);
        var rows = lines.Skip(1).Select(l => l.Split(','))
            .Where(f => f[Col("Method")].Equals(method, StringComparison.OrdinalIgnoreCase)
                        && double.Parse(f[Col("Budget")], CultureInfo.InvariantCulture) == budget)
            .Select(f => (Bits: double.Parse(f[Col("BitsPerWeight")], CultureInfo.InvariantCulture),
                          Weights: double.Parse(f[Col("Rows")], CultureInfo.InvariantCulture) * double.Parse(f[Col("Columns")], CultureInfo.InvariantCulture)))
            .ToList();
        Assert.IsNotEmpty(rows, $"{method} at {budget} in layers.csv");
        return rows.Sum(r => r.Bits * r.Weights) / rows.Sum(r => r.Weights);
    }

    /// <summary>A bad list or an unwritable folder is one line, before the model is even loaded.</summary>
    [TestMethod]
    [DataRow("--methods", "rtn,magic", "--methods")]
    [DataRow("--budgets", "2.25,x", "--budgets")]
    [DataRow("--questions", "0", "--questions")]
    [DataRow("--out", "/proc/msavq-cannot-write/report", "/proc/msavq-cannot-write/report")]
    public void BadOption_OrUnwritableFolder_FailsBeforeTheWork(string option, string value, string expected)
    {
        var console = new TestConsole();
        console.Profile.Width = 400;
        int code = Program.Run(["report", "--model", "/nonexistent/model.ckpt", option, value], console);
        Assert.AreNotEqual(0, code);
        StringAssert.Contains(console.Output, expected);
        Assert.IsFalse(console.Output.Contains("model.ckpt"), "checked before the model is loaded: " + console.Output);
    }

    [TestMethod]
    public void SmallReport_PlotsWhatItRan()
    {
        // A file an earlier report left under a name this one only writes for MSAVQ must not survive into this one.
        Directory.CreateDirectory(_out);
        File.WriteAllText(Path.Combine(_out, "bits-heatmap-2.75.png"), "from an earlier report");
        var started = DateTime.UtcNow.AddSeconds(-1);
        var console = new TestConsole();
        console.Profile.Width = 400;

        int code = Program.Run(Args("RTN,gptq", "2.25,2.75"), console);

        Assert.AreEqual(0, code, console.Output);
        var runs = Runs();
        CollectionAssert.AreEqual(new[] { "RTN 2.25", "GPTQ 2.25", "RTN 2.75", "GPTQ 2.75" },
            runs.Select(r => $"{r.Method} {r.Budget.ToString(CultureInfo.InvariantCulture)}").ToArray(), "exactly the runs asked, budgets first");
        foreach (var r in runs.Where(r => r.Budget == 2.25))
        {
            Assert.IsTrue(double.IsNaN(r.Bits), $"{r.Method} cannot meet 2.25 on the tiny model");
            StringAssert.StartsWith(r.Note, "\"No ");
        }
        foreach (var r in runs.Where(r => r.Budget == 2.75))
        {
            Assert.IsTrue(r.Bits > 2 && r.Bits <= 2.75, $"{r.Method}: {r.Bits}");
            Assert.AreEqual(BitsInLayersCsv(r.Method, 2.75), r.Bits, 1e-9, $"{r.Method}: results.csv has this run's bits");
        }
        foreach (var png in new[] { "accuracy-vs-bits.png", "kl-vs-bits.png", "proxy-error-2.75.png" })
        {
            var file = new FileInfo(Path.Combine(_out, png));
            Assert.IsTrue(file.Exists && file.Length > 1000 && file.LastWriteTimeUtc >= started, $"{png} from this run");
        }
        Assert.IsFalse(File.Exists(Path.Combine(_out, "proxy-error-2.25.png")), "no run met 2.25: nothing to draw");
        Assert.IsFalse(File.Exists(Path.Combine(_out, "bits-heatmap-2.75.png")), "no MSAVQ run: the earlier report's heatmap is gone");

        string page = File.ReadAllText(Path.Combine(_out, "index.html"));
        StringAssert.Contains(page, "Complete: all 4 runs done.");
        foreach (var setting in new[] { "--methods rtn,gptq", "--budgets 2.25,2.75", "--questions 20", "--calibration 8", "tiny.ckpt" })
            StringAssert.Contains(page, setting);
        StringAssert.Contains(page, "cannot meet the budget: No ");
        foreach (var file in new[] { "accuracy-vs-bits.png", "kl-vs-bits.png", "proxy-error-2.75.png", "results.csv", "layers.csv" })
            StringAssert.Contains(page, $"\"{file}\"");
        Assert.IsFalse(page.Contains("bench/results", StringComparison.Ordinal) || page.Contains("accuracy.csv", StringComparison.Ordinal), page);
    }

    [TestMethod]
    public void Parts_AreWrittenAsTheyComplete_AndCtrlC_LeavesAPartialPage()
    {
        using var cts = new CancellationTokenSource();
        // Ctrl+C as soon as the first run is in results.csv, while the next one runs: the folder must already hold it.
        var watcher = Task.Run(async () =>
        {
            while (!cts.IsCancellationRequested)
                if (Runs().Count >= 1) cts.Cancel();
                else await Task.Delay(2);
        });
        var console = new TestConsole();
        console.Profile.Width = 400;

        int code = Program.Run(Args("rtn,gptq", "2.75,3.5"), console, cts.Token);
        cts.Cancel();
        watcher.Wait();

        Assert.AreEqual(130, code, console.Output);
        var runs = Runs();
        Assert.IsTrue(runs.Count is >= 1 and < 4, $"stopped part-way: {runs.Count} runs");
        Assert.AreEqual(("RTN", 2.75), (runs[0].Method, runs[0].Budget));
        Assert.AreEqual(BitsInLayersCsv("rtn", 2.75), runs[0].Bits, 1e-9, "the first run's results, whole");
        string page = File.ReadAllText(Path.Combine(_out, "index.html"));
        StringAssert.Contains(page, $"Partial: stopped by Ctrl+C after {runs.Count} of 4 runs");
        StringAssert.Contains(page, "not done");
        Assert.IsTrue(File.Exists(Path.Combine(_out, "accuracy-vs-bits.png")), "the plots of the runs done are there");
        Assert.IsEmpty(Directory.EnumerateFiles(_out, "*.msavq-tmp", new EnumerationOptions { AttributesToSkip = 0 }), "no half-written file");
    }
}
