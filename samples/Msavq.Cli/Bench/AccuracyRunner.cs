using System.Diagnostics;
using Microsoft.ML;
using Msavq.MLNet;
using Msavq.MLNet.Calibration;
using Msavq.MLNet.Data;
using Msavq.MLNet.Models;
using Msavq.MLNet.Sensitivity;

namespace Msavq.Cli.Bench;

/// <summary>
/// Runs the accuracy table: calibration once on the train split (the same statistics feed every method), each
/// experiment through the same chain, evaluation on the test split against the full-precision model.
/// </summary>
public sealed class AccuracyRunner(MLContext ml, ShapesVlm model, int calibrationRows, IReadOnlyList<VqaExample> test,
                                   int vectorDimension, int seed)
{
    public VqaEvaluation FullPrecision { get; private set; } = null!;
    public double Beta { get; init; } = Defaults.Beta;
    public double TrustRatio { get; init; } = Defaults.ShiftTrustRatio;
    public long WeightsPerCodebook { get; init; } = Defaults.WeightsPerCodebook;
    public int ColumnsPerGroup { get; init; } = Defaults.ColumnsPerGroup;
    public bool RowScales { get; init; } = Defaults.RowScales;
    /// <summary>Folder for each experiment's per-layer report as CSV, or null.</summary>
    public string? LayerReports { get; init; }

    public IEnumerable<AccuracyResult> Run(IReadOnlyList<AccuracyExperiment> experiments, Action<string>? status = null)
    {
        status?.Invoke("evaluating the full-precision model");
        FullPrecision = VqaEvaluator.Evaluate(model, test);
        status?.Invoke($"calibrating on {calibrationRows} train rows");
        var calibData = ShapesVqa.Generate(ml, ShapesVqaSplit.Train, calibrationRows);
        var collector = ml.Msavq().CollectCalibration(model).Fit(calibData);
        var carried = collector.Transform(calibData);
        foreach (var e in experiments)
        {
            status?.Invoke($"{e.Name} at ≤ {e.Budget:0.##} bits/weight");
            var clock = Stopwatch.StartNew();
            MixedPrecisionVqTransformer? q = null;
            string? error = null;
            try
            {
                var sensitivity = ml.Msavq().EstimateSensitivity(new SensitivityEstimator.Options
                {
                    TargetBitsPerWeight = e.Budget, Method = e.Method, VectorDimension = vectorDimension,
                    MixedPrecision = e.MixedPrecision, ModalityWeighting = e.ModalityWeighting,
                    WeightsPerCodebook = WeightsPerCodebook, ColumnsPerGroup = ColumnsPerGroup, RowScales = RowScales,
                }).Fit(carried);
                q = ml.Msavq().QuantizeMixedPrecisionVq(new MixedPrecisionVqEstimator.Options
                {
                    GradientShift = e.GradientShift, Seed = seed, Beta = Beta, ShiftTrustRatio = TrustRatio,
                }).Fit(sensitivity.Transform(carried));
            }
            catch (ArgumentException ex) when (ex.Message.StartsWith("No ", StringComparison.Ordinal))
            {
                error = ex.Message; // a budget this method cannot meet is a result, not a crash
            }
            if (q is null)
            {
                yield return new AccuracyResult(e, double.NaN, double.NaN, double.NaN, new Dictionary<string, double>(),
                    double.NaN, double.NaN, double.NaN, clock.Elapsed.TotalSeconds, error);
                continue;
            }
            double seconds = clock.Elapsed.TotalSeconds;
            if (LayerReports is not null)
            {
                Directory.CreateDirectory(LayerReports);
                string file = Path.Combine(LayerReports, $"{string.Concat(e.Name.Where(char.IsLetterOrDigit)).ToLowerInvariant()}-{e.Budget:0.##}.csv");
                Commands.CsvFile.Save(q.Report, file);
            }
            var eval = VqaEvaluator.Evaluate(q.Model, test);
            double kib = q.Layers.Sum(l => l.BitsPerWeight * l.Weights) / 8 / 1024;
            yield return new AccuracyResult(e, q.BitsPerWeight, kib, eval.Accuracy,
                eval.FamilyAccuracy.ToDictionary(kv => ShapesVqaGenerator.NameOf(kv.Key), kv => kv.Value),
                eval.AgreementWith(FullPrecision), eval.MeanKlFrom(FullPrecision), eval.AnswerNll, seconds);
            ((IDisposable)q.Model).Dispose();
        }
    }
}
