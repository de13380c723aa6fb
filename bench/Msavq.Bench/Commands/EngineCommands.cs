using System.ComponentModel;
using Msavq.MLNet.IO;
using Msavq.MLNet.Synthetic;
using Spectre.Console.Cli;

namespace Msavq.Bench.Commands;

/// <summary>Options of the commands that run on the synthetic layer (src/Models/Synthetic/SyntheticLayer.cs).</summary>
public class SyntheticLayerSettings : CommandSettings
{
    [CommandOption("--size <N>"), Description("Rows and columns of the layer."), DefaultValue(1024)]
    public int Size { get; init; } = 1024;

    [CommandOption("--samples <N>"), Description("Calibration tokens behind its statistics."), DefaultValue(8192)]
    public int Samples { get; init; } = 8192;

    [CommandOption("--seed <N>"), Description("Seed of the synthetic layer."), DefaultValue(0)]
    public int Seed { get; init; }
}

/// <summary><c>msavq-bench proxy</c>: see <see cref="ProxyTable"/>.</summary>
public sealed class ProxyCommand : Command<ProxyCommand.Settings>
{
    public sealed class Settings : SyntheticLayerSettings
    {
        [CommandOption("--budget <BITS>"), Description("All-in bits per weight every method must meet."), DefaultValue(2.25)]
        public double Budget { get; init; } = 2.25;
    }

    public override int Execute(CommandContext context, Settings s, CancellationToken cancellation) =>
        ProxyTable.Run(s.Size, s.Samples, (ulong)s.Seed, s.Budget);
}

/// <summary><c>msavq-bench quantize-time</c>: see <see cref="QuantizeTime"/>.</summary>
public sealed class QuantizeTimeCommand : Command<QuantizeTimeCommand.Settings>
{
    public sealed class Settings : SyntheticLayerSettings
    {
        public Settings() => Size = 4096;

        [CommandOption("--method <NAME>"), Description("gptq | gptvq-d2 | gptvq-d4 | msavq-d2 | msavq-d4-shift."), DefaultValue("gptq")]
        public string Method { get; init; } = "gptq";

        [CommandOption("--fused"), Description("k-means E-step through the fused SIMD kernel (MixedPrecisionVqEstimator.Options.FusedKMeans).")]
        public bool Fused { get; init; }
    }

    public override int Execute(CommandContext context, Settings s, CancellationToken cancellation) =>
        QuantizeTime.Run(s.Method, s.Size, s.Samples, s.Fused);
}

/// <summary><c>msavq-bench export-layer</c>: the synthetic layer as NumPy files.</summary>
public sealed class ExportLayerCommand : Command<ExportLayerCommand.Settings>
{
    public sealed class Settings : SyntheticLayerSettings
    {
        public Settings() => Size = 4096;

        [CommandOption("--out <DIR>"), Description("Folder for W.npy (float32) and H.npy (float64)."), DefaultValue(".")]
        public string Out { get; init; } = ".";
    }

    public override int Execute(CommandContext context, Settings s, CancellationToken cancellation)
    {
        Directory.CreateDirectory(s.Out);
        var layer = SyntheticLayer.Create(s.Size, s.Size, s.Samples, (ulong)s.Seed);
        NpyFile.Write(Path.Combine(s.Out, "W.npy"), layer.W.to(TorchSharp.torch.ScalarType.Float32));
        NpyFile.Write(Path.Combine(s.Out, "H.npy"), layer.A);
        return 0;
    }
}

/// <summary><c>msavq-bench answers</c>: see <see cref="AnswerThroughput"/>.</summary>
public sealed class AnswersCommand : Command<AnswersCommand.Settings>
{
    public sealed class Settings : CommandSettings
    {
        [CommandOption("--questions <N>"), Description("Test questions."), DefaultValue(500)]
        public int Questions { get; init; } = 500;

        [CommandOption("--calibration <N>"), Description("Calibration rows of the 2-bit model."), DefaultValue(128)]
        public int Calibration { get; init; } = 128;

        [CommandOption("--batch <N>"), Description("Questions per forward pass."), DefaultValue(1)]
        public int Batch { get; init; } = 1;
    }

    public override int Execute(CommandContext context, Settings s, CancellationToken cancellation) =>
        AnswerThroughput.Run(s.Questions, s.Calibration, s.Batch);
}

/// <summary><c>msavq-bench kernels</c>: see <see cref="Kernels.KernelBenchmarks"/>.</summary>
public sealed class KernelsCommand : Command<KernelsCommand.Settings>
{
    public sealed class Settings : CommandSettings
    {
        [CommandOption("--filter <PATTERN>"), Description("BenchmarkDotNet filter, e.g. *LinearKernel*."), DefaultValue("*")]
        public string Filter { get; init; } = "*";
    }

    public override int Execute(CommandContext context, Settings s, CancellationToken cancellation) =>
        Kernels.KernelBenchmarks.Run(new[] { "--filter", s.Filter });
}
