using Microsoft.ML;
using Msavq.MLNet;
using Msavq.MLNet.Sensitivity;

namespace Msavq.Bench.Quality;

/// <summary>The chain's knobs a benchmark sets once for all its experiments.</summary>
public sealed record ChainSettings(int VectorDimension, int Seed)
{
    public double Beta { get; init; } = Defaults.Beta;
    public double TrustRatio { get; init; } = Defaults.ShiftTrustRatio;
    public long WeightsPerCodebook { get; init; } = Defaults.WeightsPerCodebook;
    public int ColumnsPerGroup { get; init; } = Defaults.ColumnsPerGroup;
    public bool RowScales { get; init; } = Defaults.RowScales;
    /// <summary>False for a model that does not answer questions (see MixedPrecisionVqEstimator.Options.ScoreRows).</summary>
    public bool ScoreRows { get; init; } = true;
    /// <summary>Folder for each experiment's per-layer report as CSV, or null.</summary>
    public string? LayerReports { get; init; }
}

/// <summary>
/// Fits experiments through the chain from statistics collected once: EstimateSensitivity with the experiment's
/// method, budget and switches, then QuantizeMixedPrecisionVq. Every benchmark table goes through here, so rows differ
/// only in what they name.
/// </summary>
public sealed class ExperimentChain(MLContext ml, IDataView calibrated, ChainSettings s)
{
    /// <summary>
    /// Each experiment in turn: its quantizer (null with the reason when the method cannot meet the budget) and the
    /// seconds the fit took. The caller evaluates and disposes each quantizer's model before asking for the next.
    /// </summary>
    public IEnumerable<(AccuracyExperiment Experiment, MixedPrecisionVqTransformer? Quantizer, string? Error, double Seconds)> FitAll(
        IReadOnlyList<AccuracyExperiment> experiments, Action<string>? status)
    {
        foreach (var e in experiments)
        {
            status?.Invoke($"{e.Name} at ≤ {e.Budget:0.##} bits/weight");
            var clock = System.Diagnostics.Stopwatch.StartNew();
            var (q, error) = Fit(e);
            yield return (e, q, error, clock.Elapsed.TotalSeconds);
        }
    }

    /// <summary>The quantizer, or the reason the method cannot meet the budget (a result, not a crash).</summary>
    public (MixedPrecisionVqTransformer? Quantizer, string? Error) Fit(AccuracyExperiment e)
    {
        MixedPrecisionVqTransformer q;
        try
        {
            var sensitivity = ml.Msavq().EstimateSensitivity(new SensitivityEstimator.Options
            {
                TargetBitsPerWeight = e.Budget, Method = e.Method, VectorDimension = s.VectorDimension,
                MixedPrecision = e.MixedPrecision, ModalityWeighting = e.ModalityWeighting,
                WeightsPerCodebook = s.WeightsPerCodebook, ColumnsPerGroup = s.ColumnsPerGroup, RowScales = s.RowScales,
            }).Fit(calibrated);
            q = ml.Msavq().QuantizeMixedPrecisionVq(new MixedPrecisionVqEstimator.Options
            {
                GradientShift = e.GradientShift, Seed = s.Seed, Beta = s.Beta, ShiftTrustRatio = s.TrustRatio, ScoreRows = s.ScoreRows,
            }).Fit(sensitivity.Transform(calibrated));
        }
        catch (ArgumentException ex) when (ex.Message.StartsWith("No ", StringComparison.Ordinal))
        {
            return (null, ex.Message);
        }
        if (s.LayerReports is not null)
        {
            Directory.CreateDirectory(s.LayerReports);
            string file = Path.Combine(s.LayerReports, $"{string.Concat(e.Name.Where(char.IsLetterOrDigit)).ToLowerInvariant()}-{e.Budget:0.##}.csv");
            AtomicFile.WriteCsv(q.Report, file);
        }
        return (q, null);
    }
}
