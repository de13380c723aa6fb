using System.ComponentModel;
using System.Diagnostics;
using System.Globalization;
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
/// <c>msavq report</c>: quantizes the model with each method at each budget (one calibration for all), evaluates the
/// FP model and every quantized one on the same test questions, and writes a folder (<see cref="ReportFolder"/>):
/// results.csv, per-layer CSV, MSAVQ's plan, PNG plots and an index.html, rewritten after every run.
/// </summary>
public sealed class ReportCommand(IAnsiConsole console) : Command<ReportCommand.Settings>
{
    public sealed class Settings : QuantizationSettings
    {
        private const string AllMethods = "rtn,gptq,gptqmixed,gptvq,msavq";

        [CommandOption("--out <DIR>"), Description("Folder to write (created; files in it are replaced)."), DefaultValue("report")]
        public string Out { get; init; } = "report";

        [CommandOption("--methods <LIST>"), Description("Methods to run, comma-separated, any case."), DefaultValue(AllMethods)]
        public string Methods { get; init; } = AllMethods;

        [CommandOption("--budgets <LIST>"), Description("All-in bits/weight budgets, comma-separated, for a curve per method (replaces --budget; default: --budget alone).")]
        public string? Budgets { get; init; }

        [CommandOption("--questions <N>"), Description("Test questions the FP model and every quantized one are evaluated on."), DefaultValue(500)]
        public int Questions { get; init; } = 500;

        private string[] MethodNames() => Methods.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries);

        /// <summary>The methods named, in the order given.</summary>
        public QuantizationMethod[] ParsedMethods() =>
            MethodNames().Select(m => Enum.Parse<QuantizationMethod>(m, ignoreCase: true)).Distinct().ToArray();

        public double[] ParsedBudgets() => Budgets is null ? [Budget]
            : Budgets.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries)
                .Select(b => double.Parse(b, NumberStyles.Float, CultureInfo.InvariantCulture)).Distinct().ToArray();

        /// <summary>The command as it would be typed to make this report again (shown in the page).</summary>
        public string CommandLine() =>
            $"msavq report --out {Out}{(Model is null ? "" : $" --model {Model}")} " +
            $"--methods {string.Join(",", ParsedMethods().Select(m => m.ToString().ToLowerInvariant()))} " +
            $"--budgets {string.Join(",", ParsedBudgets().Select(ReportFolder.Bits))} --questions {Questions} " +
            $"--vector-dim {VectorDimension} --calibration {Calibration}";

        public override ValidationResult Validate()
        {
            if (Questions < 1) return ValidationResult.Error("--questions must be >= 1");
            var names = MethodNames();
            if (names.Length == 0 || names.Any(m => !Enum.GetNames<QuantizationMethod>().Contains(m, StringComparer.OrdinalIgnoreCase)))
                return ValidationResult.Error($"--methods: '{Methods}' is not a comma-separated list of rtn, gptq, gptqmixed, gptvq, msavq");
            try
            {
                var budgets = ParsedBudgets();
                if (budgets.Length == 0 || budgets.Any(b => !(b > 0) || double.IsInfinity(b)))
                    return ValidationResult.Error("--budgets must be positive numbers");
            }
            catch (FormatException) { return ValidationResult.Error($"--budgets: '{Budgets}' is not a comma-separated list of numbers"); }
            return base.Validate();
        }
    }

    public override int Execute(CommandContext context, Settings s, CancellationToken cancellation)
    {
        // The folder is checked before minutes of work, not after.
        AtomicFile.EnsureWritable(Path.Combine(s.Out, ReportFolder.Page), "--out folder");
        // Budgets outside, methods inside: every method at the first budget is done before the next budget starts.
        var planned = s.ParsedBudgets().SelectMany(b => s.ParsedMethods().Select(m => (Method: m, Budget: b))).ToList();
        using var model = s.LoadModel();
        var ml = new MLContext(seed: Defaults.Seed);
        var calib = ShapesVqa.Generate(ml, ShapesVqaSplit.Train, s.Calibration);
        var test = new ShapesVqaGenerator(ShapesVqa.SeedOf(ShapesVqaSplit.Test)).Take(s.Questions).ToList();
        var folder = new ReportFolder(s, planned);
        folder.Write();   // from now on the folder says how far the report got, and nothing in it is from an earlier report
        try
        {
            console.Progress().Columns(new TaskDescriptionColumn(), new ProgressBarColumn(), new PercentageColumn(), new ElapsedTimeColumn())
                .Start(ctx =>
                {
                    var runs = ctx.AddTask($"{planned.Count} runs", maxValue: planned.Count);
                    var step = ctx.AddTask("evaluate FP", maxValue: test.Count);
                    // Every callback is a safe point to stop at: what is written so far is whole, the run under way is dropped.
                    var evaluated = new ImmediateProgress<int>(n =>
                    {
                        cancellation.ThrowIfCancellationRequested();
                        step.Value = n;
                    });
                    var progress = new ImmediateProgress<QuantizationProgress>(p =>
                    {
                        cancellation.ThrowIfCancellationRequested();
                        step.MaxValue = p.Count;
                        step.Value = p.Index;
                        step.Description = p.Layer is null ? p.Stage : $"{p.Stage} {Markup.Escape(p.Layer)}";
                    });
                    var fp = VqaEvaluator.Evaluate(model, test, progress: evaluated);
                    folder.SetFullPrecision(fp);
                    var carried = ml.Msavq().CollectCalibration(new CalibrationCollector.Options { Model = model, Progress = progress })
                        .Fit(calib).Transform(calib);
                    foreach (var (method, budget) in planned)
                    {
                        cancellation.ThrowIfCancellationRequested();
                        runs.Description = $"{ReportRun.NameOf(method)} at ≤ {ReportFolder.Bits(budget)}";
                        var run = Run(ml, carried, method, budget, s.VectorDimension, progress, test, fp, step, evaluated);
                        folder.Add(run);
                        console.MarkupLine(Markup.Escape(Line(run)));
                        runs.Increment(1);
                    }
                });
        }
        catch (Exception e)
        {
            // The page says the folder is partial and why; if even that cannot be written, the first error is the one to report.
            try { folder.Stop(e is OperationCanceledException ? "stopped by Ctrl+C" : $"stopped by an error ({e.Message})"); }
            catch (Exception w) when (w is IOException or UnauthorizedAccessException) { }
            throw;
        }
        console.MarkupLine($"report: {Markup.Escape(Path.GetFullPath(Path.Combine(s.Out, ReportFolder.Page)))}");
        return 0;
    }

    /// <summary>One method at one budget: quantize from the shared calibration, evaluate against the FP model.</summary>
    private static ReportRun Run(MLContext ml, IDataView carried, QuantizationMethod method, double budget, int vectorDimension,
                                 IProgress<QuantizationProgress> progress, IReadOnlyList<VqaExample> test, VqaEvaluation fp,
                                 ProgressTask step, IProgress<int> evaluated)
    {
        var clock = Stopwatch.StartNew();
        SensitivityTransformer sens;
        MixedPrecisionVqTransformer q;
        try
        {
            sens = ml.Msavq().EstimateSensitivity(budget, method, vectorDimension).Fit(carried);
            q = ml.Msavq().QuantizeMixedPrecisionVq(new MixedPrecisionVqEstimator.Options { Progress = progress }).Fit(sens.Transform(carried));
        }
        catch (ArgumentException e) when (e.Message.StartsWith("No ", StringComparison.Ordinal))
        {
            return new ReportRun(method, budget, clock.Elapsed.TotalSeconds) { Error = e.Message };
        }
        double seconds = clock.Elapsed.TotalSeconds;
        using (q)
        {
            step.Description = "evaluate";
            step.MaxValue = test.Count;
            var eval = VqaEvaluator.Evaluate((IVqaModel)q.Model, test, progress: evaluated);
            return new ReportRun(method, budget, seconds)
            {
                Layers = q.Layers, Plan = method == QuantizationMethod.Msavq ? sens.Plan : null, BitsPerWeight = q.BitsPerWeight,
                Accuracy = eval.Accuracy, Agreement = eval.AgreementWith(fp), MeanKl = eval.MeanKlFrom(fp), AnswerNll = eval.AnswerNll,
            };
        }
    }

    private static string Line(ReportRun r) => r.Ran
        ? $"{r.Name} ≤ {ReportFolder.Bits(r.Budget)}: {r.BitsPerWeight:F3} bits/weight, accuracy {r.Accuracy:P1}, agreement {r.Agreement:P1}, KL {r.MeanKl:G3} ({r.Seconds:F0} s)"
        : $"{r.Name} ≤ {ReportFolder.Bits(r.Budget)}: {r.Error}";
}
