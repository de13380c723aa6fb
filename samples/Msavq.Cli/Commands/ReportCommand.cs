using System.ComponentModel;
using System.Globalization;
using System.Net;
using System.Text;
using Microsoft.Data.Analysis;
using Microsoft.ML;
using Msavq.Cli.Reports;
using Msavq.MLNet;
using Msavq.MLNet.Calibration;
using Msavq.MLNet.Data;
using Msavq.MLNet.Models;
using Msavq.MLNet.Sensitivity;
using Spectre.Console;
using Spectre.Console.Cli;

namespace Msavq.Cli.Commands;

/// <summary>
/// <c>msavq report</c>: quantizes the model with every method at one budget (one calibration for all) and writes a
/// folder: per-layer CSV, MSAVQ's plan, PNG plots and an index.html that shows them with the run's settings.
/// </summary>
public sealed class ReportCommand(IAnsiConsole console) : Command<ReportCommand.Settings>
{
    public sealed class Settings : QuantizationSettings
    {
        [CommandOption("--out <DIR>"), Description("Folder to write (created; files in it are replaced).")]
        public string Out { get; init; } = "report";

        [CommandOption("--accuracy <CSV>"), Description("Accuracy table from 'msavq bench accuracy' for the accuracy-vs-bits plots.")]
        public string Accuracy { get; init; } = "bench/results/accuracy.csv";

    }

    public override int Execute(CommandContext context, Settings s, CancellationToken cancellation)
    {
        using var model = s.LoadModel();
        Directory.CreateDirectory(s.Out);
        var ml = new MLContext(seed: Defaults.Seed);
        var calib = ShapesVqa.Generate(ml, ShapesVqaSplit.Train, s.Calibration);

        var reports = new Dictionary<string, IReadOnlyList<QuantizedLayerReport>>();
        var skipped = new List<string>();
        BitAllocationPlan? plan = null;
        console.Progress().Start(ctx =>
        {
            var methods = Enum.GetValues<QuantizationMethod>();
            var task = ctx.AddTask("calibrate", maxValue: methods.Length + 1);
            var carried = ml.Msavq().CollectCalibration(model).Fit(calib).Transform(calib);
            task.Increment(1);
            foreach (var method in methods)
            {
                cancellation.ThrowIfCancellationRequested();   // between methods: nothing is half-written
                task.Description = $"quantize with {method}";
                try
                {
                    var sens = ml.Msavq().EstimateSensitivity(s.Budget, method, s.VectorDimension).Fit(carried);
                    var q = ml.Msavq().QuantizeMixedPrecisionVq().Fit(sens.Transform(carried));
                    reports[method.ToString()] = q.Layers;
                    if (method == QuantizationMethod.Msavq) plan = sens.Plan;
                    ((IDisposable)q.Model).Dispose();
                }
                catch (ArgumentException e) when (e.Message.StartsWith("No ", StringComparison.Ordinal))
                {
                    skipped.Add(e.Message);
                }
                task.Increment(1);
            }
        });

        var frames = reports.Values.Select(r => QuantizedLayerReport.ToDataFrame(r)).ToList();
        var all = frames[0];
        foreach (var f in frames.Skip(1)) all = all.Append(f.Rows, inPlace: false);
        AtomicFile.WriteCsv(all, Path.Combine(s.Out, "layers.csv"));
        var layers = reports.Values.First().Select(l => l.Layer).ToList();
        var images = new List<(string File, string Caption)>();
        ReportPlots.ProxyError(Path.Combine(s.Out, "proxy-error.png"), layers,
            reports.ToDictionary(kv => kv.Key, kv => kv.Value.Select(l => l.ProxyError).ToArray()),
            $"Proxy error per layer at ≤ {s.Budget.ToString(CultureInfo.InvariantCulture)} bits/weight");
        images.Add(("proxy-error.png", "Relative proxy error tr(E A Eᵀ)/tr(W A Wᵀ) of every quantized layer, for each method."));
        if (plan is not null)
        {
            AtomicFile.WriteCsv(plan.ToDataFrame(), Path.Combine(s.Out, "plan.csv"));
            ReportPlots.BitsHeatmap(Path.Combine(s.Out, "bits-heatmap.png"), plan.Layers.Select(l => l.Layer).ToList(),
                GroupBits(plan), $"MSAVQ: index bits per channel group (≤ {s.Budget.ToString(CultureInfo.InvariantCulture)} all-in)");
            images.Add(("bits-heatmap.png", "MSAVQ's structured allocation: index bits per weight of each input-column group (mean over its row groups). Columns are in the quantizer's order: sorted by modality affinity, image-heavy channels to the right."));
        }
        if (File.Exists(s.Accuracy))
        {
            var rows = ReadAccuracy(s.Accuracy);
            var fp = rows.FirstOrDefault(r => r.Method == "FP32");
            var methods = rows.Where(r => r.Method != "FP32" && !r.Method.Contains(' ') && !double.IsNaN(r.Bits))
                .GroupBy(r => r.Method).ToDictionary(g => g.Key, g => g.ToList());
            ReportPlots.AgainstBits(Path.Combine(s.Out, "accuracy-vs-bits.png"),
                methods.ToDictionary(kv => kv.Key, kv => kv.Value.Select(r => (r.Bits, r.Accuracy * 100)).ToList()),
                "accuracy (%)", "Test accuracy against bits per weight", fp?.Accuracy * 100, logY: false);
            ReportPlots.AgainstBits(Path.Combine(s.Out, "kl-vs-bits.png"),
                methods.ToDictionary(kv => kv.Key, kv => kv.Value.Select(r => (r.Bits, r.Kl)).ToList()),
                "KL(FP ‖ quantized)", "Divergence from the FP model against bits per weight", null, logY: true);
            images.Add(("accuracy-vs-bits.png", $"Accuracy on the test split against all-in bits per weight (from {s.Accuracy})."));
            images.Add(("kl-vs-bits.png", "Mean KL divergence of the first answer token from the FP model: where accuracy cannot separate the methods, this does."));
        }
        else skipped.Add($"No accuracy plots: {s.Accuracy} not found (run 'msavq bench accuracy').");

        AtomicFile.Write(Path.Combine(s.Out, "index.html"), Encoding.UTF8.GetBytes(Html(s, reports, images, skipped)));
        console.MarkupLine($"report: {Markup.Escape(Path.GetFullPath(Path.Combine(s.Out, "index.html")))}");
        return 0;
    }

    /// <summary>Index bits per (layer, column group), averaged over row groups; NaN where a layer has fewer groups.</summary>
    private static double[,] GroupBits(BitAllocationPlan plan)
    {
        int width = plan.Layers.Max(l => l.Layout!.ColumnGroups(l.Columns));
        var grid = new double[plan.Layers.Count, width];
        for (int i = 0; i < plan.Layers.Count; i++)
        {
            var l = plan.Layers[i];
            int cg = l.Layout!.ColumnGroups(l.Columns), rg = l.Layout.RowGroups(l.Rows);
            for (int c = 0; c < width; c++)
                grid[i, c] = c < cg
                    ? Enumerable.Range(0, rg).Average(r => Math.Log2(l.TileCodebookSizes![r * cg + c]) / l.Layout.VectorDim)
                    : double.NaN;
        }
        return grid;
    }

    private sealed record AccuracyRow(string Method, double Budget, double Bits, double Accuracy, double Kl);

    private static List<AccuracyRow> ReadAccuracy(string path)
    {
        var lines = File.ReadAllLines(path);
        var header = lines[0].Split(',');
        int Col(string name) => Array.IndexOf(header, name) is var i and >= 0 ? i
            : throw new InvalidDataException($"{path}: no column '{name}'.");
        int m = Col("method"), b = Col("budget"), bits = Col("bits_per_weight"), acc = Col("accuracy"), kl = Col("mean_kl");
        double D(string x) => double.TryParse(x, NumberStyles.Float, CultureInfo.InvariantCulture, out var v) ? v : double.NaN;
        return lines.Skip(1).Where(l => l.Length > 0).Select(l =>
        {
            var f = l.Split(',');
            return new AccuracyRow(f[m].Trim('"'), D(f[b]), D(f[bits]), D(f[acc]), D(f[kl]));
        }).ToList();
    }

    private static string Html(Settings s, Dictionary<string, IReadOnlyList<QuantizedLayerReport>> reports,
                               List<(string File, string Caption)> images, List<string> notes)
    {
        string E(string x) => WebUtility.HtmlEncode(x);
        var sb = new StringBuilder();
        sb.AppendLine("<!doctype html><html><head><meta charset=\"utf-8\"><title>MSAVQ report</title>");
        sb.AppendLine("<style>body{font-family:sans-serif;max-width:1150px;margin:2em auto}table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:3px 8px;text-align:right}td:first-child,th:first-child{text-align:left}img{max-width:100%}</style></head><body>");
        sb.AppendLine("<h1>MSAVQ quantization report</h1>");
        sb.AppendLine($"<p>Model: {E(s.Model ?? "the shipped ShapesVlm")}. Budget: ≤ {s.Budget.ToString(CultureInfo.InvariantCulture)} bits/weight all-in. " +
                      $"Vector dimension: {s.VectorDimension}. Calibration: {s.Calibration} train rows. Written {DateTime.UtcNow:yyyy-MM-dd HH:mm} UTC by " +
                      $"<code>msavq report --out {E(s.Out)} --budget {s.Budget.ToString(CultureInfo.InvariantCulture)} --vector-dim {s.VectorDimension} --calibration {s.Calibration}</code>.</p>");
        sb.AppendLine("<table><tr><th>method</th><th>layers</th><th>bits/weight</th><th>mean proxy error</th><th>time (s)</th></tr>");
        foreach (var (method, layers) in reports)
            sb.AppendLine($"<tr><td>{E(method)}</td><td>{layers.Count}</td><td>{QuantizedLayerReport.AverageBitsPerWeight(layers):F3}</td>" +
                          $"<td>{layers.Average(l => l.ProxyError):G3}</td><td>{layers.Sum(l => l.Seconds):F1}</td></tr>");
        sb.AppendLine("</table>");
        foreach (var n in notes) sb.AppendLine($"<p><em>{E(n)}</em></p>");
        foreach (var (file, caption) in images) sb.AppendLine($"<figure><img src=\"{file}\"><figcaption>{E(caption)}</figcaption></figure>");
        sb.AppendLine("<p>Data: <a href=\"layers.csv\">layers.csv</a> (one row per method and layer)" +
                      (reports.ContainsKey("Msavq") ? ", <a href=\"plan.csv\">plan.csv</a> (MSAVQ's allocation per tile)" : "") + ".</p>");
        sb.AppendLine("</body></html>");
        return sb.ToString();
    }
}
