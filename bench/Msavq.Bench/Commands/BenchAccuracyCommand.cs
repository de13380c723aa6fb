using System.ComponentModel;
using System.Globalization;
using System.Text;
using Microsoft.ML;
using Msavq.Bench.Quality;
using Msavq.MLNet;
using Msavq.MLNet.Data;
using Msavq.MLNet.Models;
using Spectre.Console;
using Spectre.Console.Cli;

namespace Msavq.Bench.Commands;

/// <summary><c>msavq bench accuracy</c>: the accuracy table of RTN, GPTQ, GPTVQ and MSAVQ on the shipped model.</summary>
public sealed class BenchAccuracyCommand(IAnsiConsole console) : Command<BenchAccuracyCommand.Settings>
{
    public sealed class Settings : BenchSettings
    {
        public Settings() => Csv = "bench/results/accuracy.csv";

        [CommandOption("--questions <N>"), Description("Test questions (the first N of the test split).")]
        public int Questions { get; init; } = 2000;

        [CommandOption("--calibration <N>"), Description("Calibration rows from the train split.")]
        public int Calibration { get; init; } = 128;

        [CommandOption("--ablation-budget <BITS>"), Description("Budget of the MSAVQ ablations.")]
        public double AblationBudget { get; init; } = 2.25;

        [CommandOption("--split <SPLIT>"), Description("Evaluation split: test (the table) or validation (tuning).")]
        public ShapesVqaSplit Split { get; init; } = ShapesVqaSplit.Test;

        public override ValidationResult Validate()
        {
            if (Questions < 1) return ValidationResult.Error("--questions must be >= 1");
            if (Calibration < 1) return ValidationResult.Error("--calibration must be >= 1");
            return base.Validate();
        }
    }

    public override int Execute(CommandContext context, Settings s, CancellationToken cancellation)
    {
        TorchSharp.torch.set_num_threads(s.Threads);
        var ml = new MLContext(seed: s.Seed);
        using var model = ShapesVlm.LoadPretrained();
        var test = new ShapesVqaGenerator(ShapesVqa.SeedOf(s.Split)).Take(s.Questions).ToList();
        var experiments = s.Selected(AccuracyExperiment.Standard(s.ParsedBudgets(), s.AblationBudget));
        if (s.Split == ShapesVqaSplit.Train) throw new ArgumentException("--split train would evaluate on the calibration split.");
        var runner = new AccuracyRunner(ml, model, s.Calibration, test, s.Chain());
        var clock = System.Diagnostics.Stopwatch.StartNew();
        var results = BenchSettings.RunWithStatus(console, status => runner.Run(experiments, status), Line, cancellation);
        var fp = runner.FullPrecision;
        string markdown = Markdown(s, fp, results, model, clock.Elapsed);
        console.WriteLine(markdown);
        if (s.Results != "none") ResultsFile.ReplaceSection(s.Results, "accuracy", markdown);
        if (s.Csv != "none") AtomicFile.Write(s.Csv, Encoding.UTF8.GetBytes(Csv(fp, results)));
        return 0;
    }

    private static string Line(AccuracyResult r) => r.Error is not null
        ? $"{r.Experiment.Name} ≤{r.Experiment.Budget}: {r.Error}"
        : $"{r.Experiment.Name} ≤{r.Experiment.Budget}: {r.BitsPerWeight:F3} b/w, acc {r.Accuracy:P1}, agree {r.Agreement:P1}, KL {Kl(r.MeanKl)}, NLL {r.AnswerNll:F4}, {r.Seconds:F0} s";

    /// <summary>KL with three significant digits: on a model this accurate it falls below 1e-4, where F4 shows 0.0001.</summary>
    private static string Kl(double kl) => double.IsNaN(kl) ? "—" : kl == 0 ? "0" : kl.ToString(kl < 1e-3 ? "0.00E+0" : "0.0000", CultureInfo.InvariantCulture);

    private static string F(double x, string format) => double.IsNaN(x) ? "—" : x.ToString(format, CultureInfo.InvariantCulture);

    private static string Markdown(Settings s, VqaEvaluation fp, List<AccuracyResult> results, ShapesVlm model, TimeSpan elapsed)
    {
        var families = fp.FamilyAccuracy.Keys.Select(ShapesVqaGenerator.NameOf).ToList();
        long weights = model.QuantizableLayers.Where(l => Defaults.Roles.Contains(l.Role))
            .Sum(l => l.Module.in_features * l.Module.out_features);
        var sb = new StringBuilder();
        sb.AppendLine("## The accuracy table: ShapesVlm at 2–3 bits per weight");
        sb.AppendLine();
        sb.AppendLine($"Command: `dotnet run --project samples/Msavq.Cli -c Release -- bench accuracy` " +
                      $"(`--split {s.Split.ToString().ToLowerInvariant()} --questions {s.Questions} --calibration {s.Calibration} {s.ChainArguments()}`), " +
                      $"{Environment.ProcessorCount} cores, {elapsed.TotalMinutes:F0} min in all.");
        sb.AppendLine($"Quantized: the {model.QuantizableLayers.Count(l => Defaults.Roles.Contains(l.Role))} language-model linears " +
                      $"({weights:N0} weights; vision tower, projector, embeddings and lm_head stay full precision, algorithm.md §8.1). " +
                      $"Calibration: the first {s.Calibration} train rows; evaluation: the first {s.Questions} {s.Split.ToString().ToLowerInvariant()} questions. " +
                      "Budgets are all-in (indices + codebooks + scales + permutations). KL is the mean KL(FP ‖ quantized) of the " +
                      "first-answer-token distribution; agreement is the share of questions where the answers match the FP model's.");
        sb.AppendLine();
        sb.Append("| method | budget | bits/weight | KiB | accuracy | agreement | KL | NLL | time (s) |");
        foreach (var f in families) sb.Append($" {f} |");
        sb.AppendLine();
        sb.Append("|---|---|---|---|---|---|---|---|---|");
        foreach (var _ in families) sb.Append("---|");
        sb.AppendLine();
        sb.Append($"| FP32 | — | 32 | {weights * 4 / 1024.0:N0} | {fp.Accuracy:P1} | 100% | 0 | {fp.AnswerNll:F4} | — |");
        foreach (var f in fp.FamilyAccuracy) sb.Append($" {f.Value:P1} |");
        sb.AppendLine();
        foreach (var r in results)
        {
            if (r.Error is not null)
            {
                sb.Append($"| {r.Experiment.Name} | ≤ {r.Experiment.Budget:0.##} | cannot meet the budget: {r.Error.Split(':').Last().Trim().TrimEnd('.')} | | | | | | |");
                foreach (var _ in families) sb.Append(" |");
                sb.AppendLine();
                continue;
            }
            sb.Append($"| {r.Experiment.Name} | ≤ {r.Experiment.Budget:0.##} | {F(r.BitsPerWeight, "F3")} | {F(r.QuantizedKiB, "N0")} | " +
                      $"{r.Accuracy:P1} | {r.Agreement:P1} | {Kl(r.MeanKl)} | {F(r.AnswerNll, "F4")} | {F(r.Seconds, "F0")} |");
            foreach (var f in families) sb.Append($" {(r.FamilyAccuracy.TryGetValue(f, out var a) ? a.ToString("P1", CultureInfo.InvariantCulture) : "—")} |");
            sb.AppendLine();
        }
        return sb.ToString();
    }

    private static string Csv(VqaEvaluation fp, List<AccuracyResult> results)
    {
        var families = fp.FamilyAccuracy.Keys.Select(ShapesVqaGenerator.NameOf).ToList();
        var sb = new StringBuilder("method,budget,bits_per_weight,kib,accuracy,agreement,mean_kl,answer_nll,seconds," + string.Join(",", families) + "\n");
        string N(double x) => x.ToString("R", CultureInfo.InvariantCulture);
        sb.AppendLine($"FP32,,32,,{N(fp.Accuracy)},1,0,{N(fp.AnswerNll)},," + string.Join(",", fp.FamilyAccuracy.Values.Select(N)));
        foreach (var r in results)
            sb.AppendLine($"\"{r.Experiment.Name}\",{N(r.Experiment.Budget)},{N(r.BitsPerWeight)},{N(r.QuantizedKiB)},{N(r.Accuracy)},{N(r.Agreement)}," +
                          $"{N(r.MeanKl)},{N(r.AnswerNll)},{N(r.Seconds)}," + string.Join(",", families.Select(f => r.FamilyAccuracy.TryGetValue(f, out var a) ? N(a) : "")));
        return sb.ToString();
    }
}
