using System.Globalization;
using System.Net;
using System.Text;
using Msavq.Cli.Commands;
using Msavq.MLNet;
using Msavq.MLNet.Models;

namespace Msavq.Cli.Reports;

/// <summary>The report's index.html: how far the report got, its settings, a table of every planned run, the figures.</summary>
public static class ReportPage
{
    public static string Html(ReportCommand.Settings s, IReadOnlyList<(QuantizationMethod Method, double Budget)> planned,
                              VqaEvaluation? fp, IReadOnlyList<ReportRun> runs, string? stopped,
                              IReadOnlyList<(string File, string Caption)> figures, IReadOnlyList<(string File, string What)> data)
    {
        static string E(string x) => WebUtility.HtmlEncode(x);
        bool complete = stopped is null && runs.Count == planned.Count;
        var sb = new StringBuilder();
        sb.AppendLine("<!doctype html><html><head><meta charset=\"utf-8\"><title>MSAVQ report</title>");
        // While the report runs, an open page reloads itself to show each run as it lands.
        if (stopped is null && !complete) sb.AppendLine("<meta http-equiv=\"refresh\" content=\"30\">");
        sb.AppendLine("<style>body{font-family:sans-serif;max-width:1150px;margin:2em auto}table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:3px 8px;text-align:right}td:first-child,th:first-child{text-align:left}img{max-width:100%}</style></head><body>");
        sb.AppendLine("<h1>MSAVQ quantization report</h1>");
        string status = complete ? $"Complete: all {planned.Count} runs done."
            : stopped is not null ? $"Partial: {stopped} after {runs.Count} of {planned.Count} runs; the rest were not done."
            : $"In progress, partial: {runs.Count} of {planned.Count} runs done; this page is rewritten as each finishes" +
              (fp is null ? " (now: evaluating the full-precision model and calibrating)." : ".");
        sb.AppendLine($"<p><strong>{E(status)}</strong></p>");
        sb.AppendLine($"<p>Model: {E(s.Model ?? "the shipped ShapesVlm")}. Methods: {E(string.Join(", ", s.ParsedMethods().Select(ReportRun.NameOf)))}. " +
                      $"Budgets: ≤ {E(string.Join(", ", s.ParsedBudgets().Select(ReportFolder.Bits)))} bits/weight all-in. Vector dimension: {s.VectorDimension}. " +
                      $"Calibration: the first {s.Calibration} train rows, shared by every run. Evaluation: the first {s.Questions} test questions, " +
                      $"for the FP model and every quantized one. Written {DateTime.UtcNow:yyyy-MM-dd HH:mm} UTC by <code>{E(s.CommandLine())}</code>.</p>");

        sb.AppendLine("<table><tr><th>method</th><th>budget</th><th>bits/weight</th><th>accuracy</th><th>agreement with FP</th>" +
                      "<th>KL(FP ‖ quantized)</th><th>answer NLL</th><th>mean proxy error</th><th>time (s)</th></tr>");
        if (fp is not null)
            sb.AppendLine($"<tr><td>FP32</td><td>—</td><td>32</td><td>{fp.Accuracy:P1}</td><td>100%</td><td>0</td><td>{fp.AnswerNll:F4}</td><td>—</td><td>—</td></tr>");
        foreach (var (method, budget) in planned)
        {
            string head = $"<tr><td>{ReportRun.NameOf(method)}</td><td>≤ {ReportFolder.Bits(budget)}</td>";
            var r = runs.FirstOrDefault(x => x.Method == method && x.Budget == budget);
            if (r is null) sb.AppendLine($"{head}<td colspan=\"7\">{(stopped is null ? "pending" : "not done")}</td></tr>");
            else if (!r.Ran) sb.AppendLine($"{head}<td colspan=\"7\">cannot meet the budget: {E(r.Error!)}</td></tr>");
            else sb.AppendLine($"{head}<td>{r.BitsPerWeight:F3}</td><td>{r.Accuracy:P1}</td><td>{r.Agreement:P1}</td><td>{Kl(r.MeanKl)}</td>" +
                               $"<td>{r.AnswerNll:F4}</td><td>{r.Layers.Average(l => l.ProxyError):G3}</td><td>{r.Seconds:F1}</td></tr>");
        }
        sb.AppendLine("</table>");
        foreach (var (file, caption) in figures) sb.AppendLine($"<figure><img src=\"{E(file)}\"><figcaption>{E(caption)}</figcaption></figure>");
        if (data.Count > 0)
            sb.AppendLine("<p>Data: " + string.Join(", ", data.Select(d => $"<a href=\"{E(d.File)}\">{E(d.File)}</a> ({E(d.What)})")) + ".</p>");
        sb.AppendLine("</body></html>");
        return sb.ToString();
    }

    /// <summary>KL with three significant digits: on a model this accurate it falls below 1e-4, where F4 shows 0.0001.</summary>
    private static string Kl(double kl) =>
        kl == 0 ? "0" : kl.ToString(Math.Abs(kl) < 1e-3 ? "0.00E+0" : "0.0000", CultureInfo.InvariantCulture);
}
