using System.ComponentModel;
using Msavq.Cli.IO;
using Msavq.MLNet.Quantization;
using Spectre.Console;
using Spectre.Console.Cli;
using static TorchSharp.torch;

namespace Msavq.Cli.Commands;

/// <summary>`msavq quantize-layer`: one layer from NumPy files, for researchers (issue: quantization engine, item 8).</summary>
public sealed class QuantizeLayerCommand(IAnsiConsole console) : Command<QuantizeLayerCommand.Settings>
{
    public sealed class Settings : CommandSettings
    {
        [CommandOption("--weight <W.npy>"), Description("Weight [[m, n]] (float32/float64, C order).")]
        public string Weight { get; init; } = "";

        [CommandOption("--hessian <H.npy>"), Description("Input second moment A = E[[x xᵀ]], [[n, n]].")]
        public string Hessian { get; init; } = "";

        [CommandOption("--gradient <G.npy>"), Description("Weight gradient G [[m, n]] (msavq: the first-order term).")]
        public string? Gradient { get; init; }

        [CommandOption("--output-factor <b.npy>"), Description("Output-gradient factor b [[m]] (msavq; default ones).")]
        public string? OutputFactor { get; init; }

        [CommandOption("--method <METHOD>"), Description("rtn | gptq | gptvq | ldlq | msavq.")]
        public string Method { get; init; } = "msavq";

        [CommandOption("--bits <B>"), Description("Bits per weight: grid bits (rtn, gptq) or index bits (vector methods).")]
        public double Bits { get; init; } = 2;

        [CommandOption("--group-size <N>"), Description("rtn/gptq: columns per group (-1 per channel). Vector methods: weights per codebook.")]
        public long GroupSize { get; init; } = 128;

        [CommandOption("--vector-dim <D>"), Description("Vector dimension d for gptvq/ldlq/msavq.")]
        public int VectorDim { get; init; } = 2;

        [CommandOption("--columns-per-group <C>"), Description("Input columns per codebook tile (vector methods).")]
        public int ColumnsPerGroup { get; init; } = 256;

        [CommandOption("--act-order"), Description("gptq: process columns by decreasing diag(H) (with static groups).")]
        public bool ActOrder { get; init; }

        [CommandOption("--beta <BETA>"), Description("msavq: trust factor of the gradient shift.")]
        public double Beta { get; init; } = new GradientShiftOptions().Beta;

        [CommandOption("--out <Q.npy>"), Description("Dequantized weight, same dtype as the input.")]
        public string? Output { get; init; }

        [CommandOption("--codes <C.npy>"), Description("Integer codes [[m, n]] (scalar) or indices [[m, n/d]] (vector).")]
        public string? Codes { get; init; }

        [CommandOption("--verbose"), Description("Print stack traces on errors.")]
        public bool Verbose { get; init; }

        public override ValidationResult Validate()
        {
            if (string.IsNullOrEmpty(Weight)) return ValidationResult.Error("--weight is required");
            if (string.IsNullOrEmpty(Hessian)) return ValidationResult.Error("--hessian is required");
            if (Method is not ("rtn" or "gptq" or "gptvq" or "ldlq" or "msavq"))
                return ValidationResult.Error($"--method must be rtn, gptq, gptvq, ldlq or msavq, not '{Method}'");
            if (Method is "rtn" or "gptq" && (Bits != Math.Floor(Bits) || Bits < 2 || Bits > 8))
                return ValidationResult.Error("--bits must be an integer in 2..8 for rtn and gptq");
            if (Bits <= 0 || Bits > 8) return ValidationResult.Error("--bits must be in (0, 8]");
            if (VectorDim < 1) return ValidationResult.Error("--vector-dim must be >= 1");
            return ValidationResult.Success();
        }
    }

    public override int Execute(CommandContext context, Settings s, CancellationToken cancellation)
    {
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
        if (s.Method == "msavq" && g is null) throw new ArgumentException("--method msavq needs --gradient (use ldlq for the second-order part alone).");

        Tensor wHat, codes; BitCost cost;
        int d = s.VectorDim;
        int k = (int)Math.Round(Math.Pow(2, s.Bits * d));
        switch (s.Method)
        {
            case "rtn":
            {
                using var q = RoundToNearest.Quantize(w, (int)s.Bits, (int)s.GroupSize);
                (wHat, codes, cost) = (q.Dequantize(), q.Codes.to(ScalarType.Int32), q.Cost());
                break;
            }
            case "gptq":
            {
                using var q = Gptq.Quantize(w, a, new GptqOptions
                {
                    Bits = (int)s.Bits, GroupSize = (int)s.GroupSize, ActOrder = s.ActOrder, StaticGroups = s.ActOrder,
                });
                (wHat, codes, cost) = (q.Dequantize(), q.Codes.to(ScalarType.Int32), q.Cost());
                break;
            }
            case "gptvq":
            {
                using var q = Gptvq.Quantize(w, a, new GptvqOptions
                {
                    VectorDim = d, IndexBitsPerWeight = s.Bits, ColumnsPerGroup = s.ColumnsPerGroup, WeightsPerCodebook = s.GroupSize,
                });
                (wHat, codes, cost) = (q.Dequantize(), q.Indices.clone(), q.Cost());
                break;
            }
            default:
            {
                var layout = VqLayout.ForGroupSize(m, n, d, s.ColumnsPerGroup, s.GroupSize);
                var target = s.Method == "msavq"
                    ? GradientShift.OneSided(w, g!, a, b, new GradientShiftOptions { Beta = s.Beta })
                    : w;
                using var q = BlockLdlq.Quantize(target, a, b, new BlockLdlqOptions { Layout = layout, CodebookSize = k });
                (wHat, codes, cost) = (q.Dequantize(), q.Indices.clone(), q.Cost());
                break;
            }
        }
        double proxy = HessianFactor.RelativeProxyError(w, wHat, a);
        if (s.Output != null) NpyFile.Write(s.Output, wHat.to(w.dtype));
        if (s.Codes != null) NpyFile.Write(s.Codes, codes);
        console.MarkupLine($"{s.Method}: {m}×{n}, [bold]{cost.BitsPerWeight:F4}[/] bits/weight all-in " +
                               $"(index {cost.IndexBitsPerWeight:F4} + overhead {cost.OverheadBitsPerWeight:F4}), " +
                               $"proxy error tr(EAEᵀ)/tr(WAWᵀ) = [bold]{proxy:G4}[/]" +
                               (g is null ? "" : $", loss model {HessianFactor.LossModel(w, wHat, a, g, b):G4}"));
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
