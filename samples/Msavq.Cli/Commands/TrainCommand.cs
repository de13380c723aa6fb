using System.ComponentModel;
using Msavq.Cli.Training;
using Msavq.MLNet;
using Msavq.MLNet.Data;
using Spectre.Console;
using Spectre.Console.Cli;

namespace Msavq.Cli.Commands;

public sealed class TrainCommand(IAnsiConsole console) : Command<TrainCommand.Settings>
{
    public sealed class Settings : CommandSettings
    {
        [CommandOption("--out <DIR>"), Description("Folder for checkpoints (last.ckpt, best.ckpt) and curve.csv.")]
        public string Output { get; init; } = new TrainingOptions().OutputDirectory;

        [CommandOption("--minutes <MIN>"), Description("Wall-clock training budget (without --steps); the LR schedule spans it.")]
        public double Minutes { get; init; } = new TrainingOptions().Minutes;

        [CommandOption("--steps <N>"), Description("Step budget instead of --minutes: the LR schedule, curriculum, focus and evaluations " +
                                                   "are laid over steps, so a run does the same on any machine.")]
        public long? Steps { get; init; }

        [CommandOption("--eval-every-steps <N>"), Description("Steps between validation evaluations and checkpoints (with --steps; the last step is always evaluated)."),
         DefaultValue(TrainingOptions.DefaultEvalEverySteps)]
        public long EvalEverySteps { get; init; } = TrainingOptions.DefaultEvalEverySteps;

        [CommandOption("--batch <N>"), Description("Batch size.")]
        public int Batch { get; init; } = new TrainingOptions().BatchSize;

        [CommandOption("--lr <LR>"), Description("Peak learning rate.")]
        public double LearningRate { get; init; } = new TrainingOptions().LearningRate;

        [CommandOption("--threads <N>"), Description("Torch intra-op threads.")]
        public int Threads { get; init; } = new TrainingOptions().Threads;

        [CommandOption("--seed <N>"), Description("Seed of the initial weights.")]
        public int Seed { get; init; } = new TrainingOptions().Seed;

        [CommandOption("--resume"), Description("Continue from the checkpoint and optimizer state in --out.")]
        public bool Resume { get; init; }

        [CommandOption("--focus <FAMILY>"), Description("Oversample one question family once the others are learned ('none' to turn off).")]
        public string Focus { get; init; } = ShapesVqaGenerator.NameOf(new TrainingOptions().FocusFamily!.Value);

        [CommandOption("--focus-after <MIN>"), Description("Minutes of training before the focus starts (without --steps).")]
        public double FocusAfter { get; init; } = new TrainingOptions().FocusAfterMinutes;

        [CommandOption("--focus-after-steps <N>"), Description("Steps of training before the focus starts (with --steps)."),
         DefaultValue(TrainingOptions.DefaultFocusAfterSteps)]
        public long FocusAfterSteps { get; init; } = TrainingOptions.DefaultFocusAfterSteps;

        [CommandOption("--focus-share <SHARE>"), Description("Share of each batch from the --focus family.")]
        public double FocusShare { get; init; } = new TrainingOptions().FocusShare;

        [CommandOption("--init-from <CKPT>"), Description("Start from this checkpoint's weights ('pretrained': the shipped model) instead of random ones.")]
        public string? InitFrom { get; init; }

        [CommandOption("--families <LIST>"), Description("Comma-separated families of the main stream (default: all six).")]
        public string? Families { get; init; }

        [CommandOption("--start-objects <N>"), Description("Objects per scene when the curriculum starts (2..6).")]
        public int StartObjects { get; init; } = new TrainingOptions().CurriculumStartObjects;

        [CommandOption("--curriculum <FRACTION>"), Description("Fraction of the budget (minutes or steps) over which scenes grow to 6 objects.")]
        public double Curriculum { get; init; } = new TrainingOptions().CurriculumFraction;

        [CommandOption("--eval-every <MIN>"), Description("Minutes between validation evaluations and checkpoints (without --steps).")]
        public double EvalEvery { get; init; } = new TrainingOptions().EvalEveryMinutes;

        [CommandOption("--no-grid-positions"), Description("Leave out the row/column embeddings on the image tokens (the first checkpoint's layout).")]
        public bool NoGridPositions { get; init; }

        [CommandOption("--no-relation-probe"), Description("Leave out the probe that predicts both named objects' rows and columns and the relation at the answer of a spatial question.")]
        public bool NoRelationProbe { get; init; }

        [CommandOption("--verbose"), Description("Print stack traces on errors.")]
        public bool Verbose { get; init; }

        public static QuestionFamily? FamilyByName(string name) =>
            Enum.GetValues<QuestionFamily>().Cast<QuestionFamily?>().FirstOrDefault(f => ShapesVqaGenerator.NameOf(f!.Value) == name);

        public override ValidationResult Validate() =>
            Minutes <= 0 ? ValidationResult.Error("--minutes must be > 0")
            : Steps < 1 ? ValidationResult.Error("--steps must be >= 1")
            : EvalEverySteps < 1 ? ValidationResult.Error("--eval-every-steps must be >= 1")
            : FocusAfterSteps < 0 ? ValidationResult.Error("--focus-after-steps must be >= 0")
            : Batch < 1 ? ValidationResult.Error("--batch must be >= 1")
            : LearningRate <= 0 ? ValidationResult.Error("--lr must be > 0")
            : Threads < 1 ? ValidationResult.Error("--threads must be >= 1")
            : Focus != "none" && FamilyByName(Focus) is null ? ValidationResult.Error($"--focus: unknown family '{Focus}'")
            : FocusShare < 0 || FocusShare > 1 ? ValidationResult.Error("--focus-share must be in [0, 1]")
            : ParseFamilies(Families) is null ? ValidationResult.Error($"--families: unknown family in '{Families}'")
            : StartObjects < 2 || StartObjects > ShapesWorld.MaxObjects ? ValidationResult.Error($"--start-objects must be in 2..{ShapesWorld.MaxObjects}")
            : Curriculum <= 0 ? ValidationResult.Error("--curriculum must be > 0")
            : EvalEvery <= 0 ? ValidationResult.Error("--eval-every must be > 0")
            : InitFrom is not null && Resume ? ValidationResult.Error("--init-from and --resume exclude each other")
            : ValidationResult.Success();

        /// <summary>The families named in <paramref name="list"/>; all six when it is empty; null when a name is unknown.</summary>
        public static IReadOnlyList<QuestionFamily>? ParseFamilies(string? list)
        {
            if (string.IsNullOrWhiteSpace(list)) return Enum.GetValues<QuestionFamily>();
            var names = list.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries);
            var families = names.Select(FamilyByName).ToList();
            return families.Any(f => f is null) || families.Count == 0 ? null : families.Select(f => f!.Value).ToList();
        }
    }

    /// <summary>
    /// Each budget's options go with that budget only: given with the other one they would be silently ignored.
    /// Spectre gives an absent option its default, so whether one was given is read from the command line itself.
    /// </summary>
    public override ValidationResult Validate(CommandContext context, Settings s)
    {
        string[] stepOptions = ["--eval-every-steps", "--focus-after-steps"], minuteOptions = ["--minutes", "--eval-every", "--focus-after"];
        bool Given(string option) => context.Arguments.Any(a => a == option || a.StartsWith(option + "=", StringComparison.Ordinal)
                                                                             || a.StartsWith(option + ":", StringComparison.Ordinal));
        if (s.Steps is null)
            return stepOptions.FirstOrDefault(Given) is { } stray ? ValidationResult.Error($"{stray} needs --steps") : ValidationResult.Success();
        return minuteOptions.FirstOrDefault(Given) is { } other ? ValidationResult.Error($"--steps and {other} exclude each other") : ValidationResult.Success();
    }

    public override int Execute(CommandContext context, Settings s, CancellationToken cancellation)
    {
        var options = new TrainingOptions
        {
            OutputDirectory = s.Output, Minutes = s.Minutes, Steps = s.Steps, EvalEverySteps = s.EvalEverySteps,
            BatchSize = s.Batch, LearningRate = s.LearningRate, Threads = s.Threads, Seed = s.Seed, Resume = s.Resume,
            FocusFamily = s.Focus == "none" ? null : Settings.FamilyByName(s.Focus), FocusShare = s.FocusShare,
            FocusAfterMinutes = s.FocusAfter, FocusAfterSteps = s.FocusAfterSteps,
            InitFrom = s.InitFrom, Families = Settings.ParseFamilies(s.Families),
            CurriculumStartObjects = s.StartObjects, CurriculumFraction = s.Curriculum, ImageGridPositions = !s.NoGridPositions, RelationProbe = !s.NoRelationProbe, EvalEveryMinutes = s.EvalEvery,
        };
        GlibcAllocator.Configure(GlibcAllocator.TrainingThreshold);
        var trainer = new ShapesVlmTrainer(options);
        using var cts = CancellationTokenSource.CreateLinkedTokenSource(cancellation);
        ConsoleCancelEventHandler stop = (_, e) => { e.Cancel = true; cts.Cancel(); };
        Console.CancelKeyPress += stop;
        try
        {
            console.Progress().AutoClear(false).Columns(
                    new TaskDescriptionColumn(), new ProgressBarColumn(), new PercentageColumn(),
                    new ElapsedTimeColumn(), new RemainingTimeColumn())
                .Start(ctx =>
                {
                    var task = ctx.AddTask("training", maxValue: 1.0);
                    trainer.Train(
                        (frac, step, loss) =>
                        {
                            task.Value = frac;
                            task.Description = $"step {step} loss {loss:F3}";
                        },
                        p => console.MarkupLine(
                            $"[grey]{p.Minutes,6:F1} min[/] step {p.Step}: val accuracy [bold]{p.Validation.Accuracy:P1}[/] " +
                            string.Join(" ", p.Validation.FamilyAccuracy.Select(kv =>
                                $"{ShapesVqaGenerator.NameOf(kv.Key)} {kv.Value:P0}")) +
                            (double.IsNaN(p.ReferentLoss) ? "" : $" [grey]referent probe {p.ReferentLoss:F3}[/]") +
                            (double.IsNaN(p.RelationLoss) ? "" : $" [grey]relation probe {p.RelationLoss:F3}[/]")),
                        cts.Token);
                });
        }
        finally
        {
            Console.CancelKeyPress -= stop;
        }
        console.MarkupLine($"checkpoints: {Markup.Escape(trainer.LastCheckpoint)}, {Markup.Escape(trainer.BestCheckpoint)}; " +
                               $"curve: {Markup.Escape(trainer.CurvePath)}");
        return cts.IsCancellationRequested ? 130 : 0;
    }
}
