using System.ComponentModel;
using System.Globalization;
using Microsoft.Data.Analysis;
using Microsoft.ML;
using Msavq.MLNet;
using Msavq.MLNet.Calibration;
using Msavq.MLNet.Data;
using Msavq.MLNet.Models;
using Msavq.MLNet.Sensitivity;
using Spectre.Console;
using Spectre.Console.Cli;

namespace Msavq.Cli.Commands;

/// <summary>
/// <c>msavq quantize</c>: the main job. Calibrates the model on train rows, quantizes it through the estimator chain,
/// and prints a before/after table on test questions (accuracy, agreement, KL, bits per weight, size).
/// </summary>
public sealed class QuantizeCommand(IAnsiConsole console) : Command<QuantizeCommand.Settings>
{
    public sealed class Settings : QuantizationSettings
    {
        [CommandOption("--method <METHOD>"), Description("Rtn, Gptq, Gptvq or Msavq.")]
        public QuantizationMethod Method { get; init; } = Defaults.Method;

        [CommandOption("--questions <N>"), Description("Test questions for the before/after table.")]
        public int Questions { get; init; } = 1000;

        [CommandOption("--mode <MODE>"), Description("Sequential (statistics re-collected block by block) or OneShot.")]
        public CalibrationMode Mode { get; init; } = Defaults.Mode;

        [CommandOption("--out <PATH>"), Description("Where to write the quantized layers (.msavq); 'none' to skip.")]
        public string Out { get; init; } = "runs/shapes-vlm.msavq";

        [CommandOption("--save-pipeline <ZIP>"), Description("Also save the fitted ML.NET pipeline (Msavq.Save) to this zip.")]
        public string? SavePipeline { get; init; }

        [CommandOption("--report <CSV>"), Description("Write the per-layer report (bits, proxy error, time) to this CSV.")]
        public string? Report { get; init; }

        [CommandOption("--seed <N>"), Description("k-means seed.")]
        public int Seed { get; init; } = Defaults.Seed;

        public override ValidationResult Validate() =>
            Questions < 1 ? ValidationResult.Error("--questions must be >= 1") : base.Validate();
    }

    public override int Execute(CommandContext context, Settings s, CancellationToken cancellation)
    {
        var ml = new MLContext(seed: s.Seed);
        using var model = s.LoadModel();
        var calib = ShapesVqa.Generate(ml, ShapesVqaSplit.Train, s.Calibration);
        var test = new ShapesVqaGenerator(ShapesVqa.SeedOf(ShapesVqaSplit.Test)).Take(s.Questions).ToList();

        MixedPrecisionVqTransformer quantized = null!;
        ITransformer fitted = null!;
        VqaEvaluation before = null!, after = null!;
        console.Progress().Columns(new TaskDescriptionColumn(), new ProgressBarColumn(), new PercentageColumn(), new ElapsedTimeColumn())
            .Start(ctx =>
            {
                var calTask = ctx.AddTask("calibrate", maxValue: 1);
                var quantTask = ctx.AddTask("quantize", maxValue: 1);
                var progress = new ImmediateProgress<QuantizationProgress>(p =>
                {
                    cancellation.ThrowIfCancellationRequested();
                    var task = p.Stage == "quantize" ? quantTask : calTask;
                    task.MaxValue = p.Count;
                    task.Value = p.Stage == "quantize" ? p.Index - 1 : p.Index;
                    task.Description = p.Layer is null ? p.Stage : $"quantize {Markup.Escape(p.Layer)}";
                });
                var chain = ml.Msavq().CollectCalibration(new CalibrationCollector.Options { Model = model, Mode = s.Mode, Progress = progress })
                    .Append(ml.Msavq().EstimateSensitivity(new SensitivityEstimator.Options
                    {
                        TargetBitsPerWeight = s.Budget, Method = s.Method, VectorDimension = s.VectorDimension,
                    }))
                    .Append(ml.Msavq().QuantizeMixedPrecisionVq(new MixedPrecisionVqEstimator.Options { Seed = s.Seed, Progress = progress }));
                var chainFit = chain.Fit(calib);
                fitted = chainFit;
                quantized = chainFit.LastTransformer;
                calTask.Value = calTask.MaxValue;
                quantTask.Value = quantTask.MaxValue;
                quantTask.Description = "quantize";
                var evalTask = ctx.AddTask("evaluate", maxValue: 2 * test.Count);
                before = VqaEvaluator.Evaluate(model, test, progress: new ImmediateProgress<int>(n => evalTask.Value = n));
                after = VqaEvaluator.Evaluate((IVqaModel)quantized.Model, test, progress: new ImmediateProgress<int>(n => evalTask.Value = test.Count + n));
            });

        double weights = quantized.Layers.Sum(l => (double)l.Weights);
        var table = new Table().Title($"{s.Method} at ≤ {s.Budget.ToString(CultureInfo.InvariantCulture)} bits/weight on {test.Count} test questions")
            .AddColumn("").AddColumn(new TableColumn("full precision").RightAligned()).AddColumn(new TableColumn("quantized").RightAligned());
        table.AddRow("accuracy", $"{before.Accuracy:P1}", $"{after.Accuracy:P1}");
        table.AddRow("agreement with FP", "100%", $"{after.AgreementWith(before):P1}");
        table.AddRow("KL(FP ‖ quantized)", "0", $"{after.MeanKlFrom(before):F4}");
        table.AddRow("answer NLL", $"{before.AnswerNll:F4}", $"{after.AnswerNll:F4}");
        table.AddRow("bits per weight (all-in)", "32", $"{quantized.BitsPerWeight:F3}");
        table.AddRow($"size of the {quantized.Layers.Count} quantized layers", $"{weights * 4 / 1024:N0} KiB",
            $"{quantized.Layers.Sum(l => l.BitsPerWeight * l.Weights) / 8 / 1024:N0} KiB");
        console.Write(table);
        cancellation.ThrowIfCancellationRequested();
        if (s.Out != "none")
        {
            quantized.SaveQuantized(s.Out);
            console.MarkupLine($"quantized layers: {Markup.Escape(s.Out)} ({new FileInfo(s.Out).Length / 1024.0:N0} KiB; " +
                               "load with MixedPrecisionVqTransformer.LoadQuantized and the same base model)");
        }
        if (s.SavePipeline is not null)
        {
            Msavq.MLNet.Msavq.Save(ml, fitted, calib.Schema, s.SavePipeline);
            console.MarkupLine($"pipeline: {Markup.Escape(s.SavePipeline)} (load with Msavq.Load, or 'msavq predict --pipeline')");
        }
        if (s.Report is not null)
        {
            CsvFile.Save(quantized.Report, s.Report);
            console.MarkupLine($"per-layer report: {Markup.Escape(s.Report)}");
        }
        return 0;
    }
}

/// <summary>An <see cref="IProgress{T}"/> that reports on the calling thread (Progress&lt;T&gt; posts to the pool and lags).</summary>
public sealed class ImmediateProgress<T>(Action<T> report) : IProgress<T>
{
    public void Report(T value) => report(value);
}

/// <summary>A DataFrame written as CSV atomically (temp file + rename), so Ctrl+C never leaves half a file.</summary>
public static class CsvFile
{
    public static void Save(DataFrame frame, string path)
    {
        using var buffer = new MemoryStream();
        DataFrame.SaveCsv(frame, buffer);
        AtomicFile.Write(path, buffer.ToArray());
    }
}
