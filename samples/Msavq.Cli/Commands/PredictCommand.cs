using System.ComponentModel;
using Microsoft.ML;
using Microsoft.ML.Data;
using Msavq.MLNet;
using Msavq.MLNet.Data;
using Spectre.Console;
using Spectre.Console.Cli;

namespace Msavq.Cli.Commands;

/// <summary><c>msavq predict</c>: loads a pipeline saved by Msavq.Save and answers test questions with it.</summary>
public sealed class PredictCommand(IAnsiConsole console) : Command<PredictCommand.Settings>
{
    public sealed class Settings : CommandSettings
    {
        [CommandOption("--pipeline <ZIP>"), Description("A model zip written by Msavq.Save (msavq quantize --save-pipeline).")]
        public string Pipeline { get; init; } = "";

        [CommandOption("--questions <N>"), Description("Answer the first N questions of the test split.")]
        public int Questions { get; init; } = 10;

        [CommandOption("--verbose"), Description("Print stack traces on errors.")]
        public bool Verbose { get; init; }

        public override ValidationResult Validate() =>
            string.IsNullOrEmpty(Pipeline) ? ValidationResult.Error("--pipeline is required")
            : Questions < 1 ? ValidationResult.Error("--questions must be >= 1") : ValidationResult.Success();
    }

    public override int Execute(CommandContext context, Settings s, CancellationToken cancellation)
    {
        if (!File.Exists(s.Pipeline)) throw new FileNotFoundException($"Pipeline file not found: {s.Pipeline}");
        var ml = new MLContext(seed: 0);
        var pipeline = Msavq.MLNet.Msavq.Load(ml, s.Pipeline, out _);
        var test = ShapesVqa.Generate(ml, ShapesVqaSplit.Test, s.Questions);
        var scored = pipeline.Transform(test);
        var questions = test.GetColumn<string>("Question").ToArray();
        var answers = scored.GetColumn<string>(MixedPrecisionVqTransformer.PredictedAnswerColumn).ToArray();
        var scores = scored.GetColumn<float>(MixedPrecisionVqTransformer.ScoreColumn).ToArray();
        for (int i = 0; i < answers.Length; i++)
            console.WriteLine($"{i}\t{answers[i]}\t{scores[i]:R}\t{questions[i]}");
        return 0;
    }
}
