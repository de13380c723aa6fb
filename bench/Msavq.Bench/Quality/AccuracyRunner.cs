using Microsoft.ML;
using Msavq.MLNet;
using Msavq.MLNet.Calibration;
using Msavq.MLNet.Data;
using Msavq.MLNet.Models;

namespace Msavq.Bench.Quality;

/// <summary>
/// Runs the accuracy table: calibration once on the train split (the same statistics feed every method), each
/// experiment through the same chain, evaluation on the test split against the full-precision model.
/// </summary>
public sealed class AccuracyRunner(MLContext ml, ShapesVlm model, int calibrationRows, IReadOnlyList<VqaExample> test,
                                   ChainSettings settings)
{
    public VqaEvaluation FullPrecision { get; private set; } = null!;

    public IEnumerable<AccuracyResult> Run(IReadOnlyList<AccuracyExperiment> experiments, Action<string>? status = null)
    {
        status?.Invoke("evaluating the full-precision model");
        FullPrecision = VqaEvaluator.Evaluate(model, test);
        status?.Invoke($"calibrating on {calibrationRows} train rows");
        var calibData = ShapesVqa.Generate(ml, ShapesVqaSplit.Train, calibrationRows);
        var collector = ml.Msavq().CollectCalibration(model).Fit(calibData);
        var chain = new ExperimentChain(ml, collector.Transform(calibData), settings);
        foreach (var (e, q, error, seconds) in chain.FitAll(experiments, status))
        {
            if (q is null)
            {
                yield return new AccuracyResult(e, double.NaN, double.NaN, double.NaN, new Dictionary<string, double>(),
                    double.NaN, double.NaN, double.NaN, seconds, error);
                continue;
            }
            var eval = VqaEvaluator.Evaluate((IVqaModel)q.Model, test);
            double kib = q.Layers.Sum(l => l.BitsPerWeight * l.Weights) / 8 / 1024;
            yield return new AccuracyResult(e, q.BitsPerWeight, kib, eval.Accuracy,
                eval.FamilyAccuracy.ToDictionary(kv => ShapesVqaGenerator.NameOf(kv.Key), kv => kv.Value),
                eval.AgreementWith(FullPrecision), eval.MeanKlFrom(FullPrecision), eval.AnswerNll, seconds);
            ((IDisposable)q.Model).Dispose();
        }
    }
}
