using System.ComponentModel;
using System.Globalization;
using System.Text;
using Microsoft.ML;
using Msavq.Bench.Curves;
using Msavq.MLNet;
using Msavq.MLNet.Data;
using Spectre.Console;
using Spectre.Console.Cli;

namespace Msavq.Bench.Commands;

/// <summary>
/// <c>msavq-bench curves</c>: quality against all-in bits per weight for RTN, GPTQ, GPTQ + allocator, GPTVQ and MSAVQ,
/// over several calibration draws, with 95 % bootstrap intervals over evaluation items, on ShapesVlm, MiniLM, the
/// ResNet18 featurizer or the PP-OCRv4 text recognizer; and,
/// with <c>--tune</c> on the validation split, each method's small tuning, whose winners the test-split curves use.
/// </summary>
public sealed class CurvesCommand(IAnsiConsole console) : Command<CurvesCommand.Settings>
{
    public sealed class Settings : CommandSettings
    {
        [CommandOption("--model <MODEL>"), Description("shapes-vlm, minilm, resnet18 or ppocr."), DefaultValue("shapes-vlm")]
        public string Model { get; init; } = "shapes-vlm";

        [CommandOption("--split <SPLIT>"), Description("Evaluation split: test (the curves) or validation (tuning)."), DefaultValue(ShapesVqaSplit.Test)]
        public ShapesVqaSplit Split { get; init; } = ShapesVqaSplit.Test;

        [CommandOption("--seeds <N>"), Description("Calibration draws per point (seeds 0…N−1; k-means is seeded the same)."), DefaultValue(3)]
        public int Seeds { get; init; } = 3;

        [CommandOption("--methods <LIST>"), Description("Methods, comma-separated, any case."), DefaultValue("rtn,gptq,gptqmixed,gptvq,msavq")]
        public string Methods { get; init; } = "rtn,gptq,gptqmixed,gptvq,msavq";

        [CommandOption("--budgets <LIST>"), Description("Requested all-in bits/weight for the methods that meet any budget (RTN and GPTQ use their grid)."),
         DefaultValue("1.5,2,2.25,2.5,3,3.5,4")]
        public string Budgets { get; init; } = "1.5,2,2.25,2.5,3,3.5,4";

        [CommandOption("--configs <LIST>"), Description("Configurations to run instead of the tuned ones, ';'-separated, e.g. 'msavq:ft=200;gptvq:d=4,cols=256'.")]
        public string? Configs { get; init; }

        [CommandOption("--tune"), Description("Tuning run: every candidate configuration of each method at --tune-budgets, seed 0, on the validation split.")]
        public bool Tune { get; init; }

        [CommandOption("--tune-budgets <LIST>"), Description("Budgets the tuning compares candidates at."), DefaultValue("2.25")]
        public string TuneBudgets { get; init; } = "2.25";

        [CommandOption("--tune-metric <NAME>"), Description("The metric the tuning ranks candidates by (default: the model's primary metric).")]
        public string? TuneMetric { get; init; }

        [CommandOption("--questions <N>"), Description("ShapesVlm: evaluation questions (the first N of the split)."), DefaultValue(2000)]
        public int Questions { get; init; } = 2000;

        [CommandOption("--sentences <N>"), Description("MiniLM: evaluation sentences (the split's half of the Brown evaluation set)."), DefaultValue(500)]
        public int Sentences { get; init; } = 500;

        [CommandOption("--images <N>"), Description("ResNet18: evaluation images (the split's half of Fashion-MNIST's test set)."), DefaultValue(500)]
        public int Images { get; init; } = 500;

        [CommandOption("--lines <N>"), Description("PP-OCRv4: evaluation lines (printed lines of the split's half of the Brown evaluation sentences)."), DefaultValue(1000)]
        public int Lines { get; init; } = 1000;

        [CommandOption("--calibration <N>"), Description("Calibration rows per draw (ShapesVlm: questions; MiniLM: sentences, in pairs; ResNet18: training images; PP-OCRv4: lines); default 128 / 800 / 128 / 128.")]
        public int? Calibration { get; init; }

        [CommandOption("--csv <PATH>"), Description("curves.csv; this model's rows are replaced, others kept ('none' to skip)."), DefaultValue("bench/results/curves.csv")]
        public string Csv { get; init; } = "bench/results/curves.csv";

        [CommandOption("--tuning <PATH>"), Description("Tuning results: written by --tune, read for the winners otherwise."), DefaultValue("bench/results/tuning.csv")]
        public string Tuning { get; init; } = "bench/results/tuning.csv";

        [CommandOption("--plots <DIR>"), Description("Folder for the PNGs ('none' to skip)."), DefaultValue("bench/results/curves")]
        public string Plots { get; init; } = "bench/results/curves";

        [CommandOption("--results <PATH>"), Description("Markdown file whose section for this model is replaced ('none' to skip)."), DefaultValue("bench/RESULTS.md")]
        public string Results { get; init; } = "bench/RESULTS.md";

        [CommandOption("--section <KEY>"), Description("The RESULTS.md section to replace (default curves-MODEL, or tuning-MODEL with --tune).")]
        public string? Section { get; init; }

        [CommandOption("--layer-reports <DIR>"), Description("Also write each run's per-layer report (bits, proxy error, time) as a CSV into this folder.")]
        public string? LayerReports { get; init; }

        [CommandOption("--threads <N>"), Description("Torch intra-op threads.")]
        public int Threads { get; init; } = Environment.ProcessorCount;

        public override ValidationResult Validate()
        {
            if (Model is not ("shapes-vlm" or "minilm" or "resnet18" or "ppocr")) return ValidationResult.Error("--model must be shapes-vlm, minilm, resnet18 or ppocr");
            if (Seeds < 1) return ValidationResult.Error("--seeds must be >= 1");
            if (Tune && Split != ShapesVqaSplit.Validation) return ValidationResult.Error("--tune runs on the validation split (--split validation)");
            if (Split == ShapesVqaSplit.Train) return ValidationResult.Error("--split train would evaluate on calibration data");
            try { _ = List(Budgets); _ = List(TuneBudgets); _ = MethodList(); _ = ConfigList(); }
            catch (Exception e) when (e is FormatException or ArgumentException) { return ValidationResult.Error(e.Message); }
            return ValidationResult.Success();
        }

        public static double[] List(string text) => text.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries)
            .Select(b => double.Parse(b, CultureInfo.InvariantCulture)).ToArray();

        public QuantizationMethod[] MethodList() => Methods.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries)
            .Select(m => CurveConfig.Parse(m).Method).Distinct().ToArray();

        public List<CurveConfig> ConfigList() => (Configs ?? "").Split(';', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries)
            .Select(CurveConfig.Parse).ToList();

        public string CommandLine() =>
            $"dotnet run --project bench/Msavq.Bench -c Release -- curves --model {Model} --split {Split.ToString().ToLowerInvariant()} --seeds {Seeds} " +
            $"--methods {Methods} --budgets {Budgets}" + (Configs is null ? "" : $" --configs \"{Configs}\"") +
            (Tune ? $" --tune --tune-budgets {TuneBudgets}" + (TuneMetric is null ? "" : $" --tune-metric {TuneMetric}") : "") +
            (Model switch { "minilm" => $" --sentences {Sentences}", "resnet18" => $" --images {Images}", "ppocr" => $" --lines {Lines}", _ => $" --questions {Questions}" }) +
            (Calibration is { } c ? $" --calibration {c}" : "");
    }

    /// <summary>
    /// Each method's tuning candidates: settings its paper or ours leaves open, checked on the validation split (MSAVQ's
    /// defaults fine-tune 300 steps; MiniLM tries 100, its steps costing ten times ShapesVlm's on 2 cores).
    /// </summary>
    public static string[] Candidates(string model, QuantizationMethod method) => method switch
    {
        QuantizationMethod.Rtn => new[] { "" },
        QuantizationMethod.Gptq or QuantizationMethod.GptqMixed => new[] { "actorder=1", "actorder=0" },
        QuantizationMethod.Gptvq => new[] { "d=2,cols=32", "d=2,cols=256", "d=4,cols=256" },
        _ when model is "minilm" or "resnet18" or "ppocr" => new[] { "ft=0", "ft=0,forward=1", "ft=100", "d=4,cols=256,ft=0", "d=4,cols=256,ft=0,forward=1" },
        _ => new[] { "ft=0", "", "cols=64,rowscales=1" },
    };

    public override int Execute(CommandContext context, Settings s, CancellationToken cancellation)
    {
        TorchSharp.torch.set_num_threads(s.Threads);
        // Conv nets' activations are megabytes each and repeat every batch: with the quantization threshold (128 KiB)
        // each is a fresh mmap the kernel zeroes, which on some machines costs more than the arithmetic (as in training).
        if (s.Model is "resnet18" or "ppocr") GlibcAllocator.Configure(GlibcAllocator.TrainingThreshold);
        foreach (var path in new[] { s.Csv, s.Results, s.Tuning }.Where(p => p != "none")) AtomicFile.EnsureWritable(path);
        var ml = new MLContext(seed: 0);
        var clock = System.Diagnostics.Stopwatch.StartNew();
        using ICurveModel model = s.Model switch
        {
            "minilm" => new MiniLmCurveModel(s.Split == ShapesVqaSplit.Validation, s.Sentences, s.Calibration ?? 800),
            "resnet18" => new ResNet18CurveModel(s.Split == ShapesVqaSplit.Validation, s.Images, s.Calibration ?? 128),
            "ppocr" => new PpOcrCurveModel(s.Split == ShapesVqaSplit.Validation, s.Lines, s.Calibration ?? 128),
            _ => new ShapesCurveModel(s.Split, s.Questions, s.Calibration ?? 128),
        };
        var plan = Plan(s, model);
        if (s.LayerReports is not null) Directory.CreateDirectory(s.LayerReports);
        var runner = new CurveRunner(ml, model, msg => console.MarkupLine($"[grey]{Markup.Escape(msg)}[/]"), s.LayerReports);
        // Plain lines (no wrapping at the console's width), one per run, so a log is easy to grep.
        var runs = runner.Run(plan, s.Tune ? 1 : s.Seeds, r => console.Profile.Out.Writer.WriteLine((
            $"{r.Config.Name} ≤{r.Budget:0.###} seed {r.Seed}: {r.Bits:F3} b/w, " +
            string.Join(", ", model.Metrics.Where(m => !m.Name.Contains('[')).Select(m =>
                $"{m.Name} {r.Items[m.Name].Where(v => !double.IsNaN(v)).Average().ToString(m.Format, CultureInfo.InvariantCulture)}")) +
            $", {r.Seconds:F0} s")), cancellation);
        var points = CurveRunner.Points(runs);
        if (s.Tune)
        {
            var rank = s.TuneMetric is null ? model.Primary
                : model.Metrics.FirstOrDefault(m => m.Name == s.TuneMetric) ?? throw new ArgumentException($"--tune-metric: {model.Key} has no metric '{s.TuneMetric}'.");
            var table = TuningTable(s, model, points, rank);
            console.WriteLine(table);
            if (s.Tuning != "none") WriteTuning(s.Tuning, model.Key, points, rank);
            if (s.Results != "none") ResultsFile.ReplaceSection(s.Results, s.Section ?? $"tuning-{model.Key}", table);
            return 0;
        }
        var ours = points.Where(p => p.Config.Method == QuantizationMethod.Msavq).ToList();
        var comparisons = model.Metrics.SelectMany(m => Comparison.All(ours, points, m)).ToList();
        if (s.Csv != "none") WriteCsv(s.Csv, model, points);
        if (s.Plots != "none")
            foreach (var m in model.Metrics)
                CurvePlots.Draw(Path.Combine(s.Plots, $"{model.Key}-{Slug(m.Name)}.png"), $"{model.Title}: {m.Name}", m, points);
        string markdown = Markdown(s, model, points, comparisons, clock.Elapsed);
        console.WriteLine(markdown);
        if (s.Results != "none") ResultsFile.ReplaceSection(s.Results, s.Section ?? $"curves-{model.Key}", markdown);
        if (s.Csv != "none") WriteComparisons(Path.Combine(Path.GetDirectoryName(s.Csv)!, "curves-comparisons.csv"), model, comparisons);
        return 0;
    }

    /// <summary>What to run: tuning candidates, or each method's tuned configuration at its budgets.</summary>
    private static List<(CurveConfig Config, double[] Budgets)> Plan(Settings s, ICurveModel model)
    {
        var methods = s.MethodList();
        var explicitConfigs = s.ConfigList();
        if (s.Tune)
        {
            var tuneBudgets = Settings.List(s.TuneBudgets);
            return methods.SelectMany(m => (explicitConfigs.Any(c => c.Method == m)
                    ? explicitConfigs.Where(c => c.Method == m)
                    : Candidates(model.Key, m).Select(c => new CurveConfig(m, c)))
                .Select(c => (c, tuneBudgets))).ToList();
        }
        var budgets = Settings.List(s.Budgets);
        var tuned = ReadTuning(s.Tuning, model.Key);
        var grid = CurveRunner.ScalarGrid(model.Model, budgets.Min() - 0.6, budgets.Max() + 0.25);
        return methods.SelectMany(m =>
        {
            var configs = explicitConfigs.Where(c => c.Method == m).ToList();
            if (configs.Count == 0) configs.Add(tuned.TryGetValue(m, out var t) ? t : new CurveConfig(m, ""));
            return configs.Select(c => (c, m is QuantizationMethod.Rtn or QuantizationMethod.Gptq ? grid : budgets));
        }).ToList();
    }

    private static string Slug(string metric) => metric.Replace("[", "-").Replace("]", "").Replace('_', '-');

    private static string F(double v, string format) => double.IsNaN(v) ? "—" : v.ToString(format, CultureInfo.InvariantCulture);

    private static string Interval(CurvePoint p, CurveMetric m)
    {
        var (v, lo, hi) = p.Summary(m.Name);
        return $"{F(v, m.Format)} [{F(lo, m.Format)}, {F(hi, m.Format)}]";
    }

    private static string TuningTable(Settings s, ICurveModel model, List<CurvePoint> points, CurveMetric rank)
    {
        var sb = new StringBuilder();
        sb.AppendLine($"## Tuning on the validation split: {model.Title}");
        sb.AppendLine();
        sb.AppendLine($"Command: `{s.CommandLine()}`. Seed 0 (one calibration draw), validation items; each method's winner (best mean " +
                      $"{rank.Name} over the tuning budgets) is what the test-split curves run.");
        sb.AppendLine();
        var shown = new[] { rank }.Concat(model.Metrics.Where(m => m != rank && !m.Name.Contains('[')).Take(2)).ToList();
        sb.AppendLine("| method | configuration | budget | bits/weight | " + string.Join(" | ", shown.Select(m => $"{m.Name} [95 % CI]")) + " | chosen |");
        sb.AppendLine("|---|---|---|---|" + string.Concat(shown.Select(_ => "---|")) + "---|");
        var winners = Winners(points, rank);
        foreach (var p in points.OrderBy(p => p.Config.Method).ThenBy(p => p.Config.Settings).ThenBy(p => p.Budget))
            sb.AppendLine($"| {CurvePlots.Label(p.Config.Method)} | `{(p.Config.Settings.Length == 0 ? "defaults" : p.Config.Settings)}` | " +
                          $"{p.Budget:0.###} | {p.Bits:F3} | " + string.Join(" | ", shown.Select(m => Interval(p, m))) +
                          $" | {(winners[p.Config.Method].Name == p.Config.Name ? "✓" : "")} |");
        return sb.ToString();
    }

    private static Dictionary<QuantizationMethod, CurveConfig> Winners(List<CurvePoint> points, CurveMetric primary) => points
        .GroupBy(p => p.Config.Method)
        .ToDictionary(g => g.Key, g => g.GroupBy(p => p.Config.Name)
            .OrderBy(c => (primary.LowerIsBetter ? 1 : -1) * c.Average(p => p.Summary(primary.Name).Value)).First().First().Config);

    private static void WriteTuning(string path, string modelKey, List<CurvePoint> points, CurveMetric primary)
    {
        var kept = File.Exists(path) ? File.ReadAllLines(path).Skip(1).Where(l => !l.StartsWith(modelKey + ",", StringComparison.Ordinal)) : Enumerable.Empty<string>();
        var winners = Winners(points, primary);
        var sb = new StringBuilder("model,method,config,budget,bits,metric,value,chosen\n");
        foreach (var l in kept) sb.AppendLine(l);
        foreach (var p in points)
            sb.AppendLine(string.Join(",", modelKey, p.Config.Method, $"\"{p.Config.Settings}\"", N(p.Budget), N(p.Bits), primary.Name,
                N(p.Summary(primary.Name).Value), winners[p.Config.Method].Name == p.Config.Name ? "1" : "0"));
        AtomicFile.Write(path, Encoding.UTF8.GetBytes(sb.ToString()));
    }

    private static Dictionary<QuantizationMethod, CurveConfig> ReadTuning(string path, string modelKey)
    {
        var result = new Dictionary<QuantizationMethod, CurveConfig>();
        if (path == "none" || !File.Exists(path)) return result;
        foreach (var line in File.ReadAllLines(path).Skip(1))
        {
            var f = Csv(line);
            if (f.Length >= 8 && f[0] == modelKey && f[7] == "1" && Enum.TryParse<QuantizationMethod>(f[1], out var m))
                result[m] = new CurveConfig(m, f[2]);
        }
        return result;
    }

    private static string[] Csv(string line)
    {
        var fields = new List<string>();
        var sb = new StringBuilder();
        bool quoted = false;
        foreach (char c in line)
        {
            if (c == '"') quoted = !quoted;
            else if (c == ',' && !quoted) { fields.Add(sb.ToString()); sb.Clear(); }
            else sb.Append(c);
        }
        fields.Add(sb.ToString());
        return fields.ToArray();
    }

    private static string N(double x) => x.ToString("R", CultureInfo.InvariantCulture);

    /// <summary>curves.csv: exactly model,method,config,bits,metric,value,ci_low,ci_high,seeds; this model's rows replaced.</summary>
    private static void WriteCsv(string path, ICurveModel model, List<CurvePoint> points)
    {
        const string Header = "model,method,config,bits,metric,value,ci_low,ci_high,seeds";
        var kept = File.Exists(path) ? File.ReadAllLines(path).Skip(1).Where(l => l.Length > 0 && !l.StartsWith(model.Key + ",", StringComparison.Ordinal)) : Enumerable.Empty<string>();
        var sb = new StringBuilder(Header + "\n");
        foreach (var l in kept) sb.AppendLine(l);
        foreach (var p in points)
            foreach (var m in model.Metrics)
            {
                var (v, lo, hi) = p.Summary(m.Name);
                sb.AppendLine(string.Join(",", model.Key, CurvePlots.Label(p.Config.Method), $"\"{p.Config.Settings}\"", N(p.Bits), m.Name, N(v), N(lo), N(hi), p.Runs.Count));
            }
        AtomicFile.Write(path, Encoding.UTF8.GetBytes(sb.ToString()));
    }

    private static void WriteComparisons(string path, ICurveModel model, List<Comparison> comparisons)
    {
        var kept = File.Exists(path) ? File.ReadAllLines(path).Skip(1).Where(l => l.Length > 0 && !l.StartsWith(model.Key + ",", StringComparison.Ordinal)) : Enumerable.Empty<string>();
        var sb = new StringBuilder("model,metric,budget,msavq_bits,baseline,how,msavq,baseline_value,difference,diff_low,diff_high,reduction,red_low,red_high\n");
        foreach (var l in kept) sb.AppendLine(l);
        foreach (var c in comparisons)
            sb.AppendLine(string.Join(",", model.Key, c.Metric, N(c.Budget), N(c.Bits), $"\"{c.Baseline}\"", $"\"{c.How}\"", N(c.Ours), N(c.Theirs),
                N(c.Difference), N(c.DifferenceLow), N(c.DifferenceHigh), N(c.Reduction), N(c.ReductionLow), N(c.ReductionHigh)));
        AtomicFile.Write(path, Encoding.UTF8.GetBytes(sb.ToString()));
    }

    private static string Markdown(Settings s, ICurveModel model, List<CurvePoint> points, List<Comparison> comparisons, TimeSpan elapsed)
    {
        var sb = new StringBuilder();
        sb.AppendLine($"## Curves: {model.Title}");
        sb.AppendLine();
        sb.AppendLine($"Command: `{s.CommandLine()}`, {Environment.ProcessorCount} cores, {elapsed.TotalMinutes:F0} min. " +
                      $"{s.Seeds} calibration draws per point (seeds 0–{s.Seeds - 1}), one-shot statistics shared by every method; " +
                      "values are means over the evaluation items of the seed-averaged per-item metric, with 95 % bootstrap intervals over items. " +
                      "Each method runs its configuration tuned on the validation split (bench/results/tuning.csv). " +
                      "Data: bench/results/curves.csv; plots: " + string.Join(", ", model.Metrics.Select(m => $"bench/results/curves/{model.Key}-{Slug(m.Name)}.png")) + ".");
        if (model.FullPrecision is { } fp) sb.AppendLine().AppendLine($"Reference, {fp}.");
        sb.AppendLine();
        var main = model.Metrics.Where(m => !m.Name.Contains('[')).ToList();
        sb.AppendLine("| method | configuration | budget | bits/weight | " + string.Join(" | ", main.Select(m => $"{m.Name} [95 % CI]")) + " |");
        sb.AppendLine("|---|---|---|---|" + string.Concat(main.Select(_ => "---|")));
        foreach (var p in points)
            sb.AppendLine($"| {CurvePlots.Label(p.Config.Method)} | `{(p.Config.Settings.Length == 0 ? "defaults" : p.Config.Settings)}` | " +
                          $"{(p.Config.Method is QuantizationMethod.Rtn or QuantizationMethod.Gptq ? "grid" : p.Budget.ToString("0.###", CultureInfo.InvariantCulture))} | " +
                          $"{p.Bits:F3} | " + string.Join(" | ", main.Select(m => Interval(p, m))) + " |");
        sb.AppendLine();
        sb.AppendLine($"MSAVQ against each baseline at MSAVQ's realized bits ({model.Primary.Name}; a baseline run within {Comparison.EqualBitsTolerance} b/w " +
                      "is compared directly, otherwise its curve is interpolated linearly between its two neighbouring points, per item). " +
                      "Difference = MSAVQ − baseline with its 95 % paired bootstrap interval; \"better\"/\"worse\" only where the interval excludes 0.");
        sb.AppendLine();
        sb.AppendLine($"| budget | MSAVQ bits | baseline | how | MSAVQ | baseline | difference [95 % CI] | relative [95 % CI] | verdict |");
        sb.AppendLine("|---|---|---|---|---|---|---|---|---|");
        foreach (var c in comparisons.Where(c => c.Metric == model.Primary.Name).OrderBy(c => c.Budget).ThenBy(c => c.Baseline, StringComparer.Ordinal))
        {
            string fmt = model.Primary.Format;
            string verdict = c.Better(model.Primary.LowerIsBetter) ? "better" : c.Worse(model.Primary.LowerIsBetter) ? "worse" : "not separable";
            sb.AppendLine($"| {c.Budget:0.###} | {c.Bits:F3} | {c.Baseline} | {c.How} | {F(c.Ours, fmt)} | {F(c.Theirs, fmt)} | " +
                          $"{F(c.Difference, fmt)} [{F(c.DifferenceLow, fmt)}, {F(c.DifferenceHigh, fmt)}] | " +
                          $"{F(-c.Reduction, "+0.0%;-0.0%")} [{F(-c.ReductionHigh, "+0.0%;-0.0%")}, {F(-c.ReductionLow, "+0.0%;-0.0%")}] | {verdict} |");
        }
        return sb.ToString();
    }
}
