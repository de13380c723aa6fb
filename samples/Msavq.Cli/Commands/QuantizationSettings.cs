using System.ComponentModel;
using Msavq.MLNet;
using Msavq.MLNet.Models;
using Spectre.Console;
using Spectre.Console.Cli;

namespace Msavq.Cli.Commands;

/// <summary>Options every command that quantizes a model shares, with their validation.</summary>
public abstract class QuantizationSettings : CommandSettings
{
    [CommandOption("--model <CKPT>"), Description("A ShapesVlm checkpoint; default: the one shipped in the library.")]
    public string? Model { get; init; }

    [CommandOption("--budget <BITS>"), Description("All-in average bits per weight over the quantized layers."), DefaultValue(Defaults.TargetBitsPerWeight)]
    public double Budget { get; init; } = Defaults.TargetBitsPerWeight;

    [CommandOption("--vector-dim <D>"), Description("d for the VQ methods (1, 2, 4 or 8)."), DefaultValue(Defaults.VectorDimension)]
    public int VectorDimension { get; init; } = Defaults.VectorDimension;

    [CommandOption("--calibration <N>"), Description("Calibration rows: from the train split (ShapesVlm), or the first N items of --data (--onnx)."), DefaultValue(128)]
    public int Calibration { get; init; } = 128;

    [CommandOption("--threads <N>"), Description("Torch intra-op threads (default: every core).")]
    public int Threads { get; init; } = Environment.ProcessorCount;

    [CommandOption("--verbose"), Description("Print stack traces on errors.")]
    public bool Verbose { get; init; }

    public override ValidationResult Validate() =>
        !(Budget > 0) || double.IsInfinity(Budget) ? ValidationResult.Error("--budget must be a positive number")
        : VectorDimension is not (1 or 2 or 4 or 8) ? ValidationResult.Error("--vector-dim must be 1, 2, 4 or 8")
        : Calibration < 1 ? ValidationResult.Error("--calibration must be >= 1")
        : ValidationResult.Success();

    /// <summary>Sets the thread count and loads the model (the shipped one unless <see cref="Model"/> names a file).</summary>
    public ShapesVlm LoadModel()
    {
        if (Model is not null && !File.Exists(Model)) throw new FileNotFoundException($"Model file not found: {Model}");
        TorchSharp.torch.set_num_threads(Threads);
        return Model is null ? ShapesVlm.LoadPretrained() : ShapesVlmCheckpoint.Load(Model);
    }
}
