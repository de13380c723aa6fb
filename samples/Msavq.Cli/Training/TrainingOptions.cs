using Msavq.MLNet.Data;

namespace Msavq.Cli.Training;

/// <summary>Knobs of <see cref="ShapesVlmTrainer"/>; the defaults are the recipe of the shipped checkpoint.</summary>
public sealed record TrainingOptions
{
    public string OutputDirectory { get; init; } = "runs/train";
    /// <summary>Wall-clock budget when <see cref="Steps"/> is null; the learning-rate schedule is laid over it.</summary>
    public double Minutes { get; init; } = 90;
    /// <summary>
    /// Step budget, or null for the wall-clock one. With a step budget the schedule, the curriculum, the start of the
    /// focus and the evaluations are laid over steps instead of time, so a run does the same on any machine.
    /// </summary>
    public long? Steps { get; init; }
    public int BatchSize { get; init; } = 64;
    public double LearningRate { get; init; } = 6e-4;
    public double MinLearningRate { get; init; } = 2e-5;
    public int WarmupSteps { get; init; } = 200;
    public double WeightDecay { get; init; } = 0.05;
    /// <summary>Weight of the per-cell shape/colour loss that grounds the image encoder (reference-vlm.md).</summary>
    public double AuxiliaryWeight { get; init; } = 0.5;
    /// <summary>Fraction of the budget (minutes or steps) over which scenes grow from 3 to the full 6 objects.</summary>
    public double CurriculumFraction { get; init; } = 0.2;
    public double EvalEveryMinutes { get; init; } = 5;
    /// <summary>Steps between evaluations under a step budget; the last step is always evaluated.</summary>
    public long EvalEverySteps { get; init; } = DefaultEvalEverySteps;
    public int EvalQuestions { get; init; } = 1200;
    public int Seed { get; init; } = 7;
    public int Threads { get; init; } = Environment.ProcessorCount;
    public bool Resume { get; init; }
    /// <summary>
    /// Checkpoint to start from instead of random weights (null: from scratch; "pretrained": the shipped model).
    /// Only the weights are taken: the optimizer, schedule and curriculum start afresh.
    /// </summary>
    public string? InitFrom { get; init; }
    /// <summary>Row/column embeddings on the image tokens (<see cref="Msavq.MLNet.Models.ShapesVlmConfig.ImageGridPositions"/>).</summary>
    public bool ImageGridPositions { get; init; } = true;
    /// <summary>Probe at the answering position of spatial questions: rows and columns of both named objects.</summary>
    public bool RelationProbe { get; init; } = true;
    /// <summary>Families of the main training stream (null: all six).</summary>
    public IReadOnlyList<QuestionFamily>? Families { get; init; }
    /// <summary>Objects per scene at the start of the curriculum (2..6).</summary>
    public int CurriculumStartObjects { get; init; } = 3;
    /// <summary>
    /// A family to oversample once the others are learned, or null. Spatial relations stay at chance while the
    /// easier families dominate the loss (reference-vlm.md; our own curve in bench/RESULTS.md).
    /// </summary>
    public QuestionFamily? FocusFamily { get; init; } = QuestionFamily.Spatial;
    /// <summary>Share of each batch drawn from <see cref="FocusFamily"/> only.</summary>
    public double FocusShare { get; init; } = 0.6;
    /// <summary>Minutes of training before the focus starts (wall-clock budget).</summary>
    public double FocusAfterMinutes { get; init; } = 45;
    /// <summary>Steps of training before the focus starts (step budget).</summary>
    public long FocusAfterSteps { get; init; } = DefaultFocusAfterSteps;

    // The step defaults are the recipe's minutes at the 80 steps/minute of an unshared run (bench/RESULTS.md); they
    // are constants so that the CLI can show them.
    public const long DefaultEvalEverySteps = 400;
    public const long DefaultFocusAfterSteps = 3600;
}
