using System.ComponentModel;
using Spectre.Console;
using Spectre.Console.Cli;

namespace Msavq.Bench.Commands;

/// <summary>
/// <c>msavq-bench onnx</c>: the bring-your-own-model results in one command — the curves of the two ONNX models nobody
/// here trained (PP-OCRv4's text recognizer, ML.NET's ResNet18 featurizer) at equal-bit points, every method with its
/// configuration tuned on the validation split, each model's RESULTS section written by <c>curves</c> (which names its
/// own command line).
/// </summary>
public sealed class OnnxCommand(IAnsiConsole console) : Command<OnnxCommand.Settings>
{
    public sealed class Settings : CommandSettings
    {
        [CommandOption("--models <LIST>"), Description("ppocr, resnet18 or both, comma-separated."), DefaultValue("ppocr,resnet18")]
        public string Models { get; init; } = "ppocr,resnet18";

        [CommandOption("--methods <LIST>"), Description("Methods, comma-separated."), DefaultValue("gptq,gptqmixed,gptvq,msavq")]
        public string Methods { get; init; } = "gptq,gptqmixed,gptvq,msavq";

        [CommandOption("--budgets <LIST>"), Description("All-in bits/weight points."), DefaultValue("2,2.25,3")]
        public string Budgets { get; init; } = "2,2.25,3";

        [CommandOption("--seeds <N>"), Description("Calibration draws per point."), DefaultValue(3)]
        public int Seeds { get; init; } = 3;

        [CommandOption("--lines <N>"), Description("PP-OCRv4: evaluation lines."), DefaultValue(1000)]
        public int Lines { get; init; } = 1000;

        [CommandOption("--images <N>"), Description("ResNet18: evaluation images."), DefaultValue(500)]
        public int Images { get; init; } = 500;

        [CommandOption("--calibration <N>"), Description("Calibration rows per draw (PP-OCRv4 lines, ResNet18 images)."), DefaultValue(64)]
        public int Calibration { get; init; } = 64;

        [CommandOption("--results <PATH>"), Description("Markdown file whose sections are replaced ('none' to skip)."), DefaultValue("bench/RESULTS.md")]
        public string Results { get; init; } = "bench/RESULTS.md";

        [CommandOption("--csv <PATH>"), Description("curves.csv ('none' to skip)."), DefaultValue("bench/results/curves.csv")]
        public string Csv { get; init; } = "bench/results/curves.csv";

        [CommandOption("--plots <DIR>"), Description("Folder for the PNGs ('none' to skip)."), DefaultValue("bench/results/curves")]
        public string Plots { get; init; } = "bench/results/curves";

        public string[] ModelList() => Models.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries);

        public override ValidationResult Validate() =>
            ModelList() is not { Length: > 0 } list || list.Any(m => m is not ("ppocr" or "resnet18"))
                ? ValidationResult.Error("--models takes ppocr and/or resnet18")
                : base.Validate();
    }

    public override int Execute(CommandContext context, Settings s, CancellationToken cancellation)
    {
        foreach (var model in s.ModelList())
        {
            var curves = new CurvesCommand.Settings
            {
                Model = model, Methods = s.Methods, Budgets = s.Budgets, Seeds = s.Seeds, Lines = s.Lines, Images = s.Images,
                Calibration = s.Calibration, Results = s.Results, Csv = s.Csv, Plots = s.Plots,
            };
            if (curves.Validate() is { Successful: false } invalid) throw new ArgumentException(invalid.Message);
            console.MarkupLine($"[bold]{Markup.Escape(curves.CommandLine())}[/]");
            int code = new CurvesCommand(console).Execute(context, curves, cancellation);
            if (code != 0) return code;
        }
        return 0;
    }
}
