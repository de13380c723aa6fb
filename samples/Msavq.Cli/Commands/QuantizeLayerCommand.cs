using System.ComponentModel;
using System.Globalization;
using Msavq.MLNet;
using Msavq.MLNet.Calibration;
using Msavq.MLNet.IO;
using Msavq.MLNet.Quantization;
using Msavq.MLNet.Sensitivity;
using Spectre.Console;
using Spectre.Console.Cli;
using static TorchSharp.torch;

namespace Msavq.Cli.Commands;

/// <summary>
/// <c>msavq quantize-layer</c>: one layer from NumPy files, for researchers. The same planner and dispatcher as the
/// chain (<see cref="LayerQuantizer.QuantizeOne"/>), so <c>--method msavq</c> is the chain's MSAVQ and every method
/// meets the same all-in budget.
/// </summary>
public sealed class QuantizeLayerCommand(IAnsiConsole console) : Command<QuantizeLayerCommand.Settings>
{
    public sealed class Settings : CommandSettings
    {
        [CommandOption("--weight <W.npy>"), Description("Weight [[m, n]] (float32/float64, C order).")]
        public string Weight { get; init; } = "";

        [CommandOption("--hessian <H.npy>"), Description("Input second moment A = E[[x xᵀ]], [[n, n]].")]
        public string Hessian { get; init; } = "";

        [CommandOption("--gradient <G.npy>"), Description("Weight gradient G [[m, n]] of the loss (MSAVQ's first-order term; optional).")]
        public string? Gradient { get; init; }

        [CommandOption("--output-factor <b.npy>"), Description("Output-gradient factor b [[m]] (optional; ones by default).")]
        public string? OutputFactor { get; init; }

        [CommandOption("--method <METHOD>"), Description("rtn, gptq, gptqmixed (GPTQ + allocator), gptvq or msavq (any case)."), DefaultValue(Defaults.Method)]
        public QuantizationMethod Method { get; init; } = Defaults.Method;

        [CommandOption("--budget <BITS>"), Description("All-in bits per weight the layer must meet (codes, codebooks, scales, maps)."),
         DefaultValue(Defaults.TargetBitsPerWeight)]
        public double Budget { get; init; } = Defaults.TargetBitsPerWeight;

        [CommandOption("--vector-dim <D>"), Description("d for gptvq and msavq: 1, 2, 4 or 8."), DefaultValue(Defaults.VectorDimension)]
        public int VectorDimension { get; init; } = Defaults.VectorDimension;

        [CommandOption("--columns-per-group <C>"), Description("Input columns per codebook tile (gptvq, msavq)."), DefaultValue(Defaults.ColumnsPerGroup)]
        public int ColumnsPerGroup { get; init; } = Defaults.ColumnsPerGroup;

        [CommandOption("--weights-per-codebook <S>"), Description("Weights sharing one codebook (msavq; gptvq searches its own); default 64·d·4^d: 2048 at d = 2, 65536 at d = 4.")]
        public long? WeightsPerCodebook { get; init; }

        [CommandOption("--uniform"), Description("msavq: one codebook size for every tile (no mixed precision).")]
        public bool Uniform { get; init; }

        [CommandOption("--no-act-order"), Description("gptq: natural column order (the published fasterquant's default), not act-order with static groups.")]
        public bool NoActOrder { get; init; }

        [CommandOption("--gradient-shift"), Description("msavq: quantize the Newton-shifted target (needs --gradient).")]
        public bool GradientShift { get; init; }

        [CommandOption("--seed <N>"), Description("k-means seed."), DefaultValue(Defaults.Seed)]
        public int Seed { get; init; } = Defaults.Seed;

        [CommandOption("--out <Q.npy>"), Description("Dequantized weight, same dtype as the input.")]
        public string? Output { get; init; }

        [CommandOption("--codes <C.npy>"), Description("Codes [[m, n]] (scalar) or codeword indices [[m, n/d]] (vector), int32.")]
        public string? Codes { get; init; }

        [CommandOption("--verbose"), Description("Print stack traces on errors.")]
        public bool Verbose { get; init; }

        public override ValidationResult Validate()
        {
            if (string.IsNullOrEmpty(Weight)) return ValidationResult.Error("--weight is required");
            if (string.IsNullOrEmpty(Hessian)) return ValidationResult.Error("--hessian is required");
            if (!(Budget > 0) || double.IsInfinity(Budget)) return ValidationResult.Error("--budget must be a positive number");
            if (VectorDimension is not (1 or 2 or 4 or 8)) return ValidationResult.Error("--vector-dim must be 1, 2, 4 or 8");
            if (GradientShift && Gradient is null) return ValidationResult.Error("--gradient-shift needs --gradient");
            return ValidationResult.Success();
        }
    }

    public override int Execute(CommandContext context, Settings s, CancellationToken cancellation)
    {
        if (s.Output is not null) AtomicFile.EnsureWritable(s.Output, "--out");
        if (s.Codes is not null) AtomicFile.EnsureWritable(s.Codes, "--codes");
        var w = NpyFile.Read(s.Weight);
        var a = NpyFile.Read(s.Hessian).to(ScalarType.Float64);
        RequireFloat(w, s.Weight);
        if (w.dim() != 2) throw new InvalidDataException($"{s.Weight}: weight must be 2-D, got shape ({string.Join(", ", w.shape)}).");
        long m = w.shape[0], n = w.shape[1];
        if (a.dim() != 2 || a.shape[0] != n || a.shape[1] != n)
            throw new InvalidDataException($"{s.Hessian}: Hessian must be {n}×{n} for a {m}×{n} weight, got ({string.Join(", ", a.shape)}).");
        RequireFinite(w, s.Weight); RequireFinite(a, s.Hessian);
        Tensor? g = null, b = null;
        if (s.Gradient != null)
        {
            g = NpyFile.Read(s.Gradient).to(ScalarType.Float64);
            if (!g.shape.SequenceEqual(w.shape)) throw new InvalidDataException($"{s.Gradient}: gradient must be {m}×{n}, got ({string.Join(", ", g.shape)}).");
            RequireFinite(g, s.Gradient);
        }
        if (s.OutputFactor != null)
        {
            b = NpyFile.Read(s.OutputFactor).to(ScalarType.Float64).reshape(-1);
            if (b.shape[0] != m) throw new InvalidDataException($"{s.OutputFactor}: output factor must have {m} entries, got {b.shape[0]}.");
            RequireFinite(b, s.OutputFactor);
        }

        using var stats = ModalityStatistics.FromMoments(Path.GetFileNameWithoutExtension(s.Weight), a, g, b, m);
        var plan = new SensitivityEstimator.Options
        {
            Method = s.Method, TargetBitsPerWeight = s.Budget, VectorDimension = s.VectorDimension,
            ColumnsPerGroup = s.ColumnsPerGroup, WeightsPerCodebook = s.WeightsPerCodebook, MixedPrecision = !s.Uniform,
        };
        using var result = LayerQuantizer.QuantizeOne(stats.Layer, w.to(ScalarType.Float32), stats, plan,
            new MixedPrecisionVqEstimator.Options { GradientShift = s.GradientShift, Seed = s.Seed, GptqActOrder = !s.NoActOrder });
        var r = result.Report;
        if (s.Output != null) NpyFile.Write(s.Output, result.Weight.to(w.dtype));
        if (s.Codes != null)
        {
            var stored = result.Stored;
            long width = stored.Kind == Msavq.MLNet.Format.QuantizedKind.Scalar ? stored.Columns : stored.Columns / stored.VectorDim;
            NpyFile.Write(s.Codes, tensor(stored.Codes, new long[] { stored.Rows, width }, ScalarType.Int32));
        }
        var inv = CultureInfo.InvariantCulture;
        console.MarkupLine($"{s.Method}: {m}×{n}, [bold]{r.BitsPerWeight.ToString("F4", inv)}[/] bits/weight all-in " +
                           $"(codes {r.IndexBitsPerWeight.ToString("F4", inv)} + overhead {r.OverheadBitsPerWeight.ToString("F4", inv)}; " +
                           $"budget {s.Budget.ToString(inv)}), proxy error tr(EAEᵀ)/tr(WAWᵀ) = [bold]{r.ProxyError.ToString("G4", inv)}[/]" +
                           (g is null ? "" : $", loss model {HessianFactor.LossModel(w, result.Weight, a, g, b).ToString("G4", inv)}"));
        return 0;
    }

    private static void RequireFloat(Tensor t, string path)
    {
        if (t.dtype is not (ScalarType.Float32 or ScalarType.Float64))
            throw new InvalidDataException($"{path}: expected float32 or float64, got {t.dtype}.");
    }

    private static void RequireFinite(Tensor t, string path)
    {
        if (!t.to(ScalarType.Float64).isfinite().all().item<bool>())
            throw new InvalidDataException($"{path}: contains NaN or infinite values.");
    }
}
