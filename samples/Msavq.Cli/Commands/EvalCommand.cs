using System.ComponentModel;
using Msavq.MLNet.Data;
using Msavq.MLNet.Models;
using Spectre.Console;
using Spectre.Console.Cli;

namespace Msavq.Cli.Commands;

public sealed class EvalCommand(IAnsiConsole console) : Command<EvalCommand.Settings>
{
    public sealed class Settings : CommandSettings
    {
        [CommandOption("--model <CKPT>"), Description("A ShapesVlm checkpoint; default: the one shipped in the library.")]
        public string? Model { get; init; }

        [CommandOption("--questions <N>"), Description("Test questions (the first N of the test split).")]
        public int Questions { get; init; } = 2400;

        [CommandOption("--baseline-train <N>"), Description("Train questions the question-only baseline learns from.")]
        public int BaselineTrain { get; init; } = 20000;

        [CommandOption("--threads <N>"), Description("Torch intra-op threads.")]
        public int Threads { get; init; } = Environment.ProcessorCount;

        [CommandOption("--verbose"), Description("Print stack traces on errors.")]
        public bool Verbose { get; init; }

        public override ValidationResult Validate() =>
            Questions < 1 ? ValidationResult.Error("--questions must be >= 1")
            : BaselineTrain < 1 ? ValidationResult.Error("--baseline-train must be >= 1")
            : ValidationResult.Success();
    }

    public override int Execute(CommandContext context, Settings s, CancellationToken cancellation)
    {
        TorchSharp.torch.set_num_threads(s.Threads);
        using var model = s.Model is null ? ShapesVlm.LoadPretrained() : ShapesVlmCheckpoint.Load(s.Model);
        var test = new ShapesVqaGenerator(ShapesVqa.SeedOf(ShapesVqaSplit.Test)).Take(s.Questions).ToList();
        var baseline = new QuestionOnlyBaseline(
            new ShapesVqaGenerator(ShapesVqa.SeedOf(ShapesVqaSplit.Train)).Take(s.BaselineTrain));

        VqaEvaluation result = null!;
        console.Progress().Start(ctx =>
        {
            var task = ctx.AddTask("evaluating", maxValue: test.Count);
            result = VqaEvaluator.Evaluate(model, test, progress: new Progress<int>(n => task.Value = n));
            task.Value = test.Count;
        });

        var table = new Table().Title($"ShapesVlm on {test.Count} Shapes-VQA test questions")
            .AddColumn("family").AddColumn(new TableColumn("questions").RightAligned())
            .AddColumn(new TableColumn("model").RightAligned()).AddColumn(new TableColumn("question-only").RightAligned());
        foreach (var family in Enum.GetValues<QuestionFamily>())
        {
            var rows = test.Where(e => e.Family == family).ToList();
            double b = rows.Average(e => baseline.Predict(e.Question, e.Family) == e.Answer ? 1.0 : 0.0);
            table.AddRow(ShapesVqaGenerator.NameOf(family), rows.Count.ToString(),
                $"{result.FamilyAccuracy[family]:P1}", $"{b:P1}");
        }
        double overallBaseline = test.Average(e => baseline.Predict(e.Question, e.Family) == e.Answer ? 1.0 : 0.0);
        table.AddRow("[bold]overall[/]", test.Count.ToString(), $"[bold]{result.Accuracy:P1}[/]", $"{overallBaseline:P1}");
        console.Write(table);
        console.MarkupLine($"answer NLL {result.AnswerNll:F4}");
        return 0;
    }
}
