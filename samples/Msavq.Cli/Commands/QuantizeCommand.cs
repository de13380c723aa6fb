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
        [CommandOption("--method <METHOD>"), Description("rtn, gptq, gptqmixed (GPTQ + allocator), gptvq or msavq (any case)."), DefaultValue(Defaults.Method)]
        public QuantizationMethod Method { get; init; } = Defaults.Method;

        [CommandOption("--questions <N>"), Description("Test questions for the before/after table."), DefaultValue(1000)]
        public int Questions { get; init; } = 1000;

        [CommandOption("--mode <MODE>"), Description("Sequential (statistics re-collected block by block) or OneShot."), DefaultValue(Defaults.Mode)]
        public CalibrationMode Mode { get; init; } = Defaults.Mode;

        [CommandOption("--out <ZIP>"), Description("The fitted pipeline (MsavqPipeline.Save), what 'msavq predict --pipeline' reads; 'none' to skip."),
         DefaultValue(DefaultOut)]
        public string Out { get; init; } = DefaultOut;

        [CommandOption("--layers-out <MSAVQ>"), Description("Also the quantized layers alone (.msavq; load with MixedPrecisionVqTransformer.LoadQuantized).")]
        public string? LayersOut { get; init; }

        [CommandOption("--report <CSV>"), Description("Write the per-layer report (bits, proxy error, time) to this CSV.")]
        public string? Report { get; init; }

        [CommandOption("--seed <N>"), Description("k-means seed."), DefaultValue(Defaults.Seed)]
        public int Seed { get; init; } = Defaults.Seed;

        [CommandOption("--onnx <MODEL>"), Description("Quantize this ONNX model instead (an image model or a sentence encoder); needs --data and --out (OUT.onnx, or OUT.zip with --format msavq).")]
        public string? Onnx { get; init; }

        [CommandOption("--data <PATH>"), Description("--onnx: a folder of images, a text file of lines (with --vocab), or a CSV with a header whose column named as the graph input (or image / text) holds image paths or texts (with --vocab; a next column pairs texts); the first --calibration items calibrate, the next 64 are held out.")]
        public string? Data { get; init; }

        [CommandOption("--format <FORMAT>"), Description("--onnx: dequantized (float32 weights; ML.NET's ApplyOnnxModel runs it), matmulnbits (scalar layers packed, ONNX Runtime only) or msavq (an ML.NET model zip with the codes, for MsavqPipeline.Load; --out OUT.zip)."),
         DefaultValue("dequantized")]
        public string Format { get; init; } = "dequantized";

        [CommandOption("--vocab <TXT>"), Description("--onnx with text: the model's WordPiece vocabulary (vocab.txt).")]
        public string? Vocab { get; init; }

        [CommandOption("--layers <REGEX>"), Description("--onnx: quantize only layers whose graph name matches.")]
        public string? Layers { get; init; }

        [CommandOption("--min-weights <N>"), Description("--onnx: leave layers with fewer weights in float."), DefaultValue(0L)]
        public long MinWeights { get; init; }

        [CommandOption("--channels <ORDER>"), Description("--onnx with images: the graph's channel order, rgb or bgr."), DefaultValue("rgb")]
        public string Channels { get; init; } = "rgb";

        [CommandOption("--scale <X>"), Description("--onnx with images: factor on 0–255 pixels (e.g. 0.003921569 for values from 0 to 1)."), DefaultValue(1f)]
        public float Scale { get; init; } = 1f;

        [CommandOption("--mean <A,B,C>"), Description("--onnx with images: per-channel value subtracted after scaling, in --channels order."), DefaultValue("0,0,0")]
        public string Mean { get; init; } = "0,0,0";

        [CommandOption("--std <A,B,C>"), Description("--onnx with images: per-channel divisor after the mean."), DefaultValue("1,1,1")]
        public string Std { get; init; } = "1,1,1";

        public override ValidationResult Validate() =>
            Questions < 1 ? ValidationResult.Error("--questions must be >= 1")
            : Onnx is null && Data is not null ? ValidationResult.Error("--data is read only with --onnx")
            : Channels.ToLowerInvariant() is not ("rgb" or "bgr") ? ValidationResult.Error("--channels must be rgb or bgr")
            : MinWeights < 0 ? ValidationResult.Error("--min-weights cannot be negative")
            : base.Validate();
    }

    /// <summary>Where the main job writes its pipeline; 'msavq predict' reads it by default.</summary>
    public const string DefaultOut = "runs/shapes-vlm.zip";

    public override int Execute(CommandContext context, Settings s, CancellationToken cancellation)
    {
        if (s.Onnx is not null) return OnnxQuantizeJob.Run(console, s, cancellation);
        // Every output is checked before minutes of work, not after.
        if (s.Out != "none") AtomicFile.EnsureWritable(s.Out, "--out");
        if (s.LayersOut is not null) AtomicFile.EnsureWritable(s.LayersOut, "--layers-out");
        if (s.Report is not null) AtomicFile.EnsureWritable(s.Report, "--report");
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
                var bars = new ChainProgress(ctx, cancellation);
                var chainFit = bars.Chain(ml, new CalibrationCollector.Options { Model = model, Mode = s.Mode }, s, scoreRows: true).Fit(calib);
                fitted = chainFit;
                quantized = chainFit.LastTransformer;
                bars.Done();
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
            MsavqPipeline.Save(ml, fitted, calib.Schema, s.Out);
            console.MarkupLine($"pipeline: {Markup.Escape(s.Out)} ({new FileInfo(s.Out).Length / 1024.0:N0} KiB; " +
                               $"'msavq predict --pipeline {Markup.Escape(s.Out)}' answers with it, MsavqPipeline.Load loads it)");
        }
        if (s.LayersOut is not null)
        {
            quantized.SaveQuantized(s.LayersOut);
            console.MarkupLine($"quantized layers: {Markup.Escape(s.LayersOut)} ({new FileInfo(s.LayersOut).Length / 1024.0:N0} KiB; " +
                               "load with MixedPrecisionVqTransformer.LoadQuantized and the same base model)");
        }
        if (s.Report is not null)
        {
            AtomicFile.WriteCsv(quantized.Report, s.Report);
            console.MarkupLine($"per-layer report: {Markup.Escape(s.Report)}");
        }
        return 0;
    }
}
