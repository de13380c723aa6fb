using System.ComponentModel;
using Microsoft.ML;
using Microsoft.ML.Data;
using Msavq.MLNet;
using Msavq.MLNet.Data;
using Msavq.MLNet.Format;
using Msavq.MLNet.Models;
using Spectre.Console;
using Spectre.Console.Cli;

namespace Msavq.Cli.Commands;

/// <summary>
/// <c>msavq predict</c>: answers test questions with what <c>msavq quantize</c> wrote — its pipeline zip by default,
/// or a .msavq file of quantized layers with the model they were quantized from.
/// </summary>
public sealed class PredictCommand(IAnsiConsole console) : Command<PredictCommand.Settings>
{
    public sealed class Settings : CommandSettings
    {
        [CommandOption("--pipeline <FILE>"), Description("A pipeline zip (msavq quantize --out, MsavqPipeline.Save) or a .msavq file (--layers-out)."),
         DefaultValue(QuantizeCommand.DefaultOut)]
        public string Pipeline { get; init; } = QuantizeCommand.DefaultOut;

        [CommandOption("--model <CKPT>"), Description("For a .msavq file: the ShapesVlm checkpoint it was quantized from; default: the shipped one.")]
        public string? Model { get; init; }

        [CommandOption("--questions <N>"), Description("Answer the first N questions of the test split."), DefaultValue(10)]
        public int Questions { get; init; } = 10;

        [CommandOption("--verbose"), Description("Print stack traces on errors.")]
        public bool Verbose { get; init; }

        public override ValidationResult Validate() =>
            string.IsNullOrEmpty(Pipeline) ? ValidationResult.Error("--pipeline is required")
            : Questions < 1 ? ValidationResult.Error("--questions must be >= 1") : ValidationResult.Success();
    }

    public override int Execute(CommandContext context, Settings s, CancellationToken cancellation)
    {
        if (!File.Exists(s.Pipeline))
            throw new FileNotFoundException($"Pipeline file not found: {s.Pipeline}" +
                (s.Pipeline == QuantizeCommand.DefaultOut ? " (run 'msavq quantize' first: it writes this file)" : ""));
        var ml = new MLContext(seed: 0);
        var test = ShapesVqa.Generate(ml, ShapesVqaSplit.Test, s.Questions);
        var kind = ModelFile.Detect(s.Pipeline);
        if (kind != ModelFileKind.QuantizedLayers && s.Model is not null)
            throw new ArgumentException("--model goes with a .msavq file; a pipeline zip carries its own model.");
        ITransformer pipeline;
        if (kind == ModelFileKind.QuantizedLayers)
        {
            using var baseModel = s.Model is null ? ShapesVlm.LoadPretrained() : ShapesVlmCheckpoint.Load(s.Model);
            pipeline = MixedPrecisionVqTransformer.LoadQuantized(ml, s.Pipeline, baseModel, test.Schema);
        }
        else pipeline = MsavqPipeline.Load(ml, s.Pipeline, out var _);   // says what the file is when it is neither
        using var owned = pipeline as IDisposable;
        var scored = pipeline.Transform(test);
        var questions = test.GetColumn<string>("Question").ToArray();
        var answers = scored.GetColumn<string>(MixedPrecisionVqTransformer.PredictedAnswerColumn).ToArray();
        var scores = scored.GetColumn<float>(MixedPrecisionVqTransformer.ScoreColumn).ToArray();
        for (int i = 0; i < answers.Length; i++)
            console.WriteLine($"{i}\t{answers[i]}\t{scores[i]:R}\t{questions[i]}");
        return 0;
    }
}
