using System.Diagnostics;
using Microsoft.ML;
using Msavq.MLNet;
using Msavq.MLNet.Format;
using Msavq.MLNet.Models;
using Msavq.MLNet.Sensitivity;

namespace Msavq.Bench.Curves;

/// <summary>One quantization of the model: a configuration at a requested budget, for one calibration draw.</summary>
public sealed record CurveRun(CurveConfig Config, double Budget, int Seed, double Bits, Dictionary<string, double[]> Items, double Seconds);

/// <summary>A point of a curve: the runs of one configuration at one budget, over the seeds.</summary>
public sealed record CurvePoint(CurveConfig Config, double Budget, double Bits, IReadOnlyList<CurveRun> Runs)
{
    /// <summary>Per item, the mean over seeds (the unit the bootstrap resamples).</summary>
    public double[] Items(string metric)
    {
        var first = Runs[0].Items[metric];
        var mean = new double[first.Length];
        foreach (var r in Runs)
            for (int i = 0; i < mean.Length; i++) mean[i] += r.Items[metric][i] / Runs.Count;
        return mean;
    }

    /// <summary>Mean over the items that count for this metric, with its 95 % bootstrap interval.</summary>
    public (double Value, double Low, double High) Summary(string metric)
    {
        var x = Items(metric).Where(v => !double.IsNaN(v)).ToArray();
        var (lo, hi) = Bootstrap.Mean(x);
        return (x.Average(), lo, hi);
    }
}

/// <summary>
/// Draws the curves: for each calibration draw (seed), calibration once (one-shot statistics, shared by every
/// method so they differ only in the layer step), then every configuration at every budget through the estimator
/// chain, evaluated item by item against the FP model.
/// </summary>
public sealed class CurveRunner(MLContext ml, ICurveModel model, Action<string>? status, string? layerReports = null)
{
    /// <summary>Runs <paramref name="plan"/> (configurations and their budgets) for seeds 0…<paramref name="seeds"/>−1, reporting each run.</summary>
    public List<CurveRun> Run(IReadOnlyList<(CurveConfig Config, double[] Budgets)> plan, int seeds, Action<CurveRun>? onRun, CancellationToken cancel)
    {
        var runs = new List<CurveRun>();
        for (int seed = 0; seed < seeds; seed++)
        {
            status?.Invoke($"seed {seed}: calibrating");
            var collector = model.Collector(ml, out var rows, seed).Fit(rows);
            var calibrated = collector.Transform(rows);
            foreach (var (config, budgets) in plan)
                foreach (double budget in budgets)
                {
                    cancel.ThrowIfCancellationRequested();
                    status?.Invoke($"seed {seed}: {config.Name} at ≤ {budget:0.###}");
                    var run = Fit(calibrated, config, budget, seed);
                    if (run is null) continue;
                    runs.Add(run);
                    onRun?.Invoke(run);
                }
            collector.Dispose();
        }
        return runs;
    }

    private CurveRun? Fit(IDataView calibrated, CurveConfig config, double budget, int seed)
    {
        var plan = new SensitivityEstimator.Options { TargetBitsPerWeight = budget };
        var quantize = new MixedPrecisionVqEstimator.Options { Seed = seed, ScoreRows = model.ScoreRows };
        config.Apply(plan, quantize);
        var clock = Stopwatch.StartNew();
        MixedPrecisionVqTransformer q;
        try
        {
            var sensitivity = ml.Msavq().EstimateSensitivity(plan).Fit(calibrated);
            q = ml.Msavq().QuantizeMixedPrecisionVq(quantize).Fit(sensitivity.Transform(calibrated));
        }
        catch (ArgumentException e) when (e.Message.StartsWith("No ", StringComparison.Ordinal))
        {
            status?.Invoke($"{config.Name} at ≤ {budget}: {e.Message}");
            return null;
        }
        using (q)
        {
            double seconds = clock.Elapsed.TotalSeconds;
            double bits = q.Quantized.Layers.Sum(l => l.Cost().TotalBits) / q.Quantized.Layers.Sum(l => (double)l.Rows * l.Columns);
            if (layerReports is not null)
            {
                // Per layer: shape, method, bits, proxy error, time — to see which layer a bad run breaks.
                string name = $"{config.Name}-{budget.ToString("0.###", System.Globalization.CultureInfo.InvariantCulture)}-seed{seed}.csv";
                AtomicFile.WriteCsv(q.Report, Path.Combine(layerReports, string.Concat(name.Select(c => char.IsLetterOrDigit(c) || c is '.' or '-' ? c : '_'))));
            }
            return new CurveRun(config, budget, seed, bits, model.Evaluate(q.Model), seconds);
        }
    }

    /// <summary>The runs grouped into points (configuration, budget), ordered by bits.</summary>
    public static List<CurvePoint> Points(IEnumerable<CurveRun> runs) => runs
        .GroupBy(r => (r.Config.Name, r.Budget))
        .Select(g => new CurvePoint(g.First().Config, g.Key.Budget, g.Average(r => r.Bits), g.OrderBy(r => r.Seed).ToList()))
        .OrderBy(p => p.Config.Method).ThenBy(p => p.Bits).ToList();

    /// <summary>
    /// The budgets where RTN's and GPTQ's single configuration changes (2–4 bits × groups of 32 … per channel): their
    /// natural grid, which requested budgets between them would only repeat.
    /// </summary>
    public static double[] ScalarGrid(IQuantizableModel model, double from, double to)
    {
        var shapes = Defaults.Layers(model).Select(l => (M: l.Module.out_features, N: l.Module.in_features)).ToList();
        double weights = shapes.Sum(s => (double)s.M * s.N);
        return new[] { 2, 3, 4 }.SelectMany(bits => new[] { 32, 64, 128, 256, -1 }.Select(g =>
                shapes.Sum(s => BitCost.Scalar(s.M, s.N, bits, g <= 0 || g >= s.N ? 1 : (s.N + g - 1) / g, false).TotalBits) / weights))
            .Where(b => b >= from && b <= to).Select(b => b + 1e-9).Distinct().OrderBy(b => b).ToArray();
    }
}
