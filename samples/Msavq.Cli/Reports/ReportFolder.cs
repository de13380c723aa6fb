using System.Globalization;
using System.Text;
using Microsoft.Data.Analysis;
using Msavq.Cli.Commands;
using Msavq.MLNet;
using Msavq.MLNet.Models;
using Msavq.MLNet.Sensitivity;

namespace Msavq.Cli.Reports;

/// <summary>
/// The report's folder, rewritten from what is known so far after every step (issue 19.11: a long report used to leave
/// an empty folder until its very end). Each part that has data is written atomically and each that has none yet is
/// removed, so the folder never mixes this report with an earlier one; index.html is written last, so it never links
/// a part that is not there, and it says how many of the planned runs are done.
/// </summary>
public sealed class ReportFolder(ReportCommand.Settings settings, IReadOnlyList<(QuantizationMethod Method, double Budget)> planned)
{
    public const string Page = "index.html";

    private readonly List<ReportRun> _runs = new();
    private VqaEvaluation? _fullPrecision;
    private string? _stopped;

    /// <summary>The full-precision model's evaluation on the test questions, the reference of every run.</summary>
    public void SetFullPrecision(VqaEvaluation fp)
    {
        _fullPrecision = fp;
        Write();
    }

    public void Add(ReportRun run)
    {
        _runs.Add(run);
        Write();
    }

    /// <summary>Marks the folder partial with the reason the report stopped before its planned runs were done.</summary>
    public void Stop(string reason)
    {
        _stopped = reason;
        Write();
    }

    /// <summary>Writes every part that has data, removes every part that has none, then the page.</summary>
    public void Write()
    {
        var figures = new List<(string File, string Caption)>();
        var data = new List<(string File, string What)>();
        var ran = _runs.Where(r => r.Ran).ToList();

        if (Part("results.csv", _fullPrecision is not null, path => AtomicFile.Write(path, Encoding.UTF8.GetBytes(ResultsCsv()))))
            data.Add(("results.csv", "one row per run: bits, accuracy, agreement and KL against the FP model, time"));
        if (Part("layers.csv", ran.Count > 0, path => AtomicFile.WriteCsv(LayersFrame(ran), path)))
            data.Add(("layers.csv", "one row per run and layer"));

        if (Part("accuracy-vs-bits.png", ran.Count > 0, path => ReportPlots.AgainstBits(path, ByMethod(ran, r => r.Accuracy * 100),
                "accuracy (%)", $"Accuracy on {settings.Questions} test questions against bits per weight", _fullPrecision!.Accuracy * 100, logY: false)))
            figures.Add(("accuracy-vs-bits.png", $"Accuracy on the first {settings.Questions} questions of the test split against the realized all-in bits per weight of each run of this report (one point per budget)."));
        if (Part("kl-vs-bits.png", ran.Count > 0, path => ReportPlots.AgainstBits(path, ByMethod(ran, r => r.MeanKl),
                "KL(FP ‖ quantized)", $"Divergence from the FP model on {settings.Questions} test questions", null, logY: true)))
            figures.Add(("kl-vs-bits.png", $"Mean KL divergence of the first answer token from the FP model's, on the same {settings.Questions} questions: where accuracy cannot separate the methods, this does."));

        foreach (double budget in planned.Select(p => p.Budget).Distinct())
        {
            string b = Bits(budget);
            var atBudget = ran.Where(r => r.Budget == budget).ToList();
            if (Part($"proxy-error-{b}.png", atBudget.Count > 0, path => ReportPlots.ProxyError(path, atBudget[0].Layers.Select(l => l.Layer).ToList(),
                    atBudget.ToDictionary(r => r.Name, r => r.Layers.Select(l => l.ProxyError).ToArray()), $"Proxy error per layer at ≤ {b} bits/weight")))
                figures.Add(($"proxy-error-{b}.png", $"At ≤ {b} bits/weight: relative proxy error tr(E A Eᵀ)/tr(W A Wᵀ) of every quantized layer, for each method."));
            var plan = atBudget.FirstOrDefault(r => r.Plan is not null)?.Plan;
            if (Part($"plan-{b}.csv", plan is not null, path => AtomicFile.WriteCsv(plan!.ToDataFrame(), path)))
                data.Add(($"plan-{b}.csv", $"MSAVQ's allocation per tile at ≤ {b}"));
            if (Part($"bits-heatmap-{b}.png", plan is not null, path => ReportPlots.BitsHeatmap(path, plan!.Layers.Select(l => l.Layer).ToList(),
                    GroupBits(plan), $"MSAVQ: index bits per channel group (≤ {b} all-in)")))
                figures.Add(($"bits-heatmap-{b}.png", $"At ≤ {b} bits/weight: MSAVQ's structured allocation, index bits per weight of each input-column group (mean over its row groups). Columns are in the quantizer's order: sorted by modality affinity, image-heavy channels to the right."));
        }

        AtomicFile.Write(Path.Combine(settings.Out, Page), Encoding.UTF8.GetBytes(
            ReportPage.Html(settings, planned, _fullPrecision, _runs, _stopped, figures, data)));
    }

    /// <summary>Writes <paramref name="file"/> when it has data, else removes what an earlier report left under that name.</summary>
    private bool Part(string file, bool hasData, Action<string> write)
    {
        string path = Path.Combine(settings.Out, file);
        if (hasData) write(path);
        else File.Delete(path);
        return hasData;
    }

    /// <summary>Budgets as typed, in file names and captions.</summary>
    public static string Bits(double budget) => budget.ToString(CultureInfo.InvariantCulture);

    private static Dictionary<string, List<(double Bits, double Value)>> ByMethod(List<ReportRun> ran, Func<ReportRun, double> value) =>
        ran.GroupBy(r => r.Name).ToDictionary(g => g.Key, g => g.Select(r => (r.BitsPerWeight, value(r))).ToList());

    /// <summary>One row per run of this report (method, budget, realized bits, accuracy, KL), plus why a run could not be made.</summary>
    private string ResultsCsv()
    {
        static string N(double x) => double.IsNaN(x) ? "" : x.ToString("R", CultureInfo.InvariantCulture);
        var fp = _fullPrecision!;
        var sb = new StringBuilder("method,budget,bits_per_weight,accuracy,agreement,mean_kl,answer_nll,seconds,note\n");
        sb.Append($"FP32,,32,{N(fp.Accuracy)},1,0,{N(fp.AnswerNll)},,\n");
        foreach (var r in _runs)
            sb.Append($"{r.Name},{N(r.Budget)},{N(r.BitsPerWeight)},{N(r.Accuracy)},{N(r.Agreement)},{N(r.MeanKl)},{N(r.AnswerNll)}," +
                      $"{N(r.Seconds)},{(r.Error is null ? "" : $"\"{r.Error.Replace("\"", "\"\"")}\"")}\n");
        return sb.ToString();
    }

    private static DataFrame LayersFrame(List<ReportRun> ran)
    {
        DataFrame? all = null;
        foreach (var r in ran)
        {
            var frame = QuantizedLayerReport.ToDataFrame(r.Layers);
            frame.Columns.Insert(0, new DoubleDataFrameColumn("Budget", Enumerable.Repeat(r.Budget, r.Layers.Count)));
            all = all is null ? frame : all.Append(frame.Rows, inPlace: false);
        }
        return all!;
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
}
