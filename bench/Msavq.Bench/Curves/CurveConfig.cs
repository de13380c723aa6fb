using System.Globalization;
using Msavq.MLNet;
using Msavq.MLNet.Sensitivity;

namespace Msavq.Bench.Curves;

/// <summary>
/// A method and its settings as one string, e.g. <c>gptvq:d=4,cols=256</c> or <c>msavq:ft=200,lr=0.001</c>: what the
/// tuning compares, what the CSV's <c>config</c> column names, and what a run applies to the chain's options.
/// </summary>
public sealed record CurveConfig(QuantizationMethod Method, string Settings)
{
    /// <summary>The keys a setting may use, with what they set.</summary>
    public static readonly IReadOnlyDictionary<string, string> Keys = new Dictionary<string, string>
    {
        ["d"] = "vector dimension", ["cols"] = "columns per codebook tile", ["share"] = "weights per codebook (MSAVQ)",
        ["rowscales"] = "fp16 scale per output row (0/1)", ["tier"] = "tier step in index bits", ["mixed"] = "mixed precision (0/1)",
        ["modality"] = "modality weighting (0/1)", ["gamma"] = "exponent of the global salience", ["actorder"] = "GPTQ act-order (0/1)",
        ["shift"] = "gradient shift β (0 = off)", ["trust"] = "shift trust ratio τ", ["ft"] = "codebook fine-tuning steps", ["bfloor"] = "ε of the output factor's floor b ≥ ε·mean(b)",
        ["lr"] = "fine-tuning learning rate", ["ftbatch"] = "fine-tuning batch size", ["kmeans"] = "k-means iterations",
        ["refine"] = "closed-form codebook refinement (0/1)", ["damp"] = "relative damping λ",
        ["curv"] = "curvature: activation or fisher", ["group"] = "column grouping: contiguous, affinity or salience",
        ["local"] = "local salience: obs or gradient", ["forward"] = "MSAVQ sweeps first to last (0/1)",
        ["fused"] = "k-means E-step through the fused SIMD kernel (0/1)",
        ["kmsample"] = "k-means fits each codebook on at most this many vectors (0 = all)",
    };

    public string Name => Method.ToString().ToLowerInvariant() + (Settings.Length > 0 ? ":" + Settings : "");

    public static CurveConfig Parse(string text)
    {
        var parts = text.Split(':', 2);
        if (!Enum.TryParse<QuantizationMethod>(parts[0].Trim().Replace("-", ""), ignoreCase: true, out var method))
            throw new ArgumentException($"'{parts[0]}' is not a method ({string.Join(", ", Enum.GetNames<QuantizationMethod>())}).");
        var config = new CurveConfig(method, parts.Length > 1 ? parts[1].Trim() : "");
        config.Apply(new SensitivityEstimator.Options(), new MixedPrecisionVqEstimator.Options());   // unknown keys fail here
        return config;
    }

    /// <summary>Sets the options this configuration names (the method, then every key=value).</summary>
    public void Apply(SensitivityEstimator.Options plan, MixedPrecisionVqEstimator.Options quantize)
    {
        plan.Method = Method;
        foreach (var pair in Settings.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries))
        {
            var kv = pair.Split('=', 2);
            if (kv.Length != 2 || !Keys.ContainsKey(kv[0]))
                throw new ArgumentException($"'{pair}' in '{Name}': expected key=value with key one of {string.Join(", ", Keys.Keys)}.");
            switch (kv[0])
            {
                case "curv": plan.Curvature = Enum.Parse<Curvature>(kv[1], ignoreCase: true); continue;
                case "group": plan.ColumnGrouping = Enum.Parse<ColumnGrouping>(kv[1], ignoreCase: true); continue;
                case "local": plan.LocalSalience = Enum.Parse<LocalSalience>(kv[1], ignoreCase: true); continue;
            }
            double v = double.Parse(kv[1], CultureInfo.InvariantCulture);
            switch (kv[0])
            {
                case "d": plan.VectorDimension = (int)v; break;
                case "cols": plan.ColumnsPerGroup = (int)v; break;
                case "share": plan.WeightsPerCodebook = (long)v; break;
                case "rowscales": plan.RowScales = v != 0; break;
                case "tier": plan.TierStep = v; break;
                case "mixed": plan.MixedPrecision = v != 0; break;
                case "modality": plan.ModalityWeighting = v != 0; break;
                case "gamma": plan.GlobalExponent = v; break;
                case "bfloor": plan.OutputFactorFloor = v; break;
                case "damp": plan.RelativeDamping = v; quantize.RelativeDamping = v; break;
                case "actorder": quantize.GptqActOrder = v != 0; break;
                case "shift": quantize.GradientShift = v > 0; quantize.Beta = v > 0 ? v : quantize.Beta; break;
                case "trust": quantize.ShiftTrustRatio = v; break;
                case "ft": quantize.FineTuneSteps = (int)v; break;
                case "lr": quantize.FineTuneLearningRate = v; break;
                case "ftbatch": quantize.FineTuneBatchSize = (int)v; break;
                case "kmeans": quantize.KMeansIterations = (int)v; break;
                case "refine": quantize.RefineCodebooks = v != 0; break;
                case "forward": quantize.SweepForward = v != 0; break;
                case "fused": quantize.FusedKMeans = v != 0; break;
                case "kmsample": quantize.KMeansMaxPoints = v > 0 ? (long)v : null; break;
            }
        }
    }
}
