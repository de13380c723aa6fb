using System.ComponentModel;
using System.Globalization;
using Msavq.Bench.Quality;
using Msavq.MLNet;
using Spectre.Console;
using Spectre.Console.Cli;

namespace Msavq.Bench.Commands;

/// <summary>Options every benchmark table shares: which experiments, the chain's knobs, where results go.</summary>
public abstract class BenchSettings : CommandSettings
{
    [CommandOption("--budgets <LIST>"), Description("All-in bits/weight budgets, comma-separated.")]
    public string Budgets { get; init; } = "2.0,2.25,3";

    [CommandOption("--vector-dim <D>"), Description("d for GPTVQ and MSAVQ.")]
    public int VectorDimension { get; init; } = Defaults.VectorDimension;

    [CommandOption("--only <NAMES>"), Description("Run only experiments whose name contains one of these (comma-separated).")]
    public string? Only { get; init; }

    [CommandOption("--beta <B>"), Description("β of MSAVQ's gradient shift.")]
    public double Beta { get; init; } = Defaults.Beta;

    [CommandOption("--trust <TAU>"), Description("τ: trust region of the gradient shift (in units of a 2-bit RTN error).")]
    public double Trust { get; init; } = Defaults.ShiftTrustRatio;

    [CommandOption("--weights-per-codebook <N>"), Description("MSAVQ: weights sharing one codebook.")]
    public long WeightsPerCodebook { get; init; } = Defaults.WeightsPerCodebook;

    [CommandOption("--columns-per-group <N>"), Description("GPTVQ and MSAVQ: input columns per codebook tile.")]
    public int ColumnsPerGroup { get; init; } = Defaults.ColumnsPerGroup;

    [CommandOption("--row-scales"), Description("MSAVQ: one fp16 scale per output row (counted in the budget).")]
    public bool? RowScales { get; init; }

    [CommandOption("--layers <DIR>"), Description("Folder for each experiment's per-layer report (CSV); 'none' to skip.")]
    public string Layers { get; init; } = "none";

    [CommandOption("--seed <N>"), Description("k-means seed.")]
    public int Seed { get; init; } = Defaults.Seed;

    [CommandOption("--results <PATH>"), Description("Markdown file whose section of this table is replaced; 'none' to skip.")]
    public string Results { get; init; } = "bench/RESULTS.md";

    [CommandOption("--csv <PATH>"), Description("CSV with every measured number; 'none' to skip.")]
    public string Csv { get; init; } = "none";

    [CommandOption("--threads <N>"), Description("Torch intra-op threads.")]
    public int Threads { get; init; } = Environment.ProcessorCount;

    [CommandOption("--verbose"), Description("Print stack traces on errors.")]
    public bool Verbose { get; init; }

    public double[] ParsedBudgets() => Budgets.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries)
        .Select(b => double.Parse(b, CultureInfo.InvariantCulture)).ToArray();

    /// <summary>The experiments whose names match <see cref="Only"/> (all without it).</summary>
    public List<AccuracyExperiment> Selected(IEnumerable<AccuracyExperiment> experiments) => experiments
        .Where(e => Only is null || Only.Split(',').Any(o => e.Name.Contains(o.Trim(), StringComparison.OrdinalIgnoreCase)))
        .ToList();

    public ChainSettings Chain() => new(VectorDimension, Seed)
    {
        Beta = Beta, TrustRatio = Trust, WeightsPerCodebook = WeightsPerCodebook, ColumnsPerGroup = ColumnsPerGroup,
        RowScales = RowScales ?? Defaults.RowScales, LayerReports = Layers == "none" ? null : Layers,
    };

    /// <summary>The options that shape the chain, as they would be typed (for the command line in RESULTS.md).</summary>
    public string ChainArguments() =>
        $"--beta {Beta} --trust {Trust} --weights-per-codebook {WeightsPerCodebook} --columns-per-group {ColumnsPerGroup}" +
        $"{((RowScales ?? Defaults.RowScales) ? " --row-scales" : "")} --budgets {Budgets} --vector-dim {VectorDimension} --seed {Seed}";

    /// <summary>
    /// Runs <paramref name="run"/> under a status line, printing each result as it comes and handing the results so
    /// far to <paramref name="afterEach"/>; returns them all.
    /// </summary>
    public static List<T> RunWithStatus<T>(IAnsiConsole console, Func<Action<string>, IEnumerable<T>> run, Func<T, string> line,
                                           CancellationToken cancellation, Action<List<T>>? afterEach = null)
    {
        var results = new List<T>();
        console.Status().Start("starting", ctx =>
        {
            foreach (var r in run(msg => ctx.Status(Markup.Escape(msg))))
            {
                cancellation.ThrowIfCancellationRequested();
                results.Add(r);
                console.MarkupLine(Markup.Escape(line(r)));
                afterEach?.Invoke(results);
            }
        });
        return results;
    }

    public override ValidationResult Validate()
    {
        try { if (ParsedBudgets().Any(b => !(b > 0))) return ValidationResult.Error("--budgets must be positive numbers"); }
        catch (FormatException) { return ValidationResult.Error($"--budgets: '{Budgets}' is not a comma-separated list of numbers"); }
        return ValidationResult.Success();
    }
}
