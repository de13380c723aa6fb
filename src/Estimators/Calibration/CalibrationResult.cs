using Msavq.MLNet.Models;

namespace Msavq.MLNet.Calibration;

/// <summary>What <see cref="CalibrationCollector"/> learned: per-layer statistics by modality, and what is needed to
/// re-collect them on a partly quantized copy of the model (sequential mode).</summary>
public sealed class CalibrationResult
{
    internal CalibrationResult(IQuantizableModel model, IReadOnlyList<ModelRow> rows, CalibrationCollector.Options options,
                               IReadOnlyList<QuantizableLayer> layers, Dictionary<string, ModalityStatistics> statistics)
    {
        Model = model; Rows = rows; Options = options; Layers = layers; Statistics = statistics;
        VisionWeights = ModalityRatios(layers.Select(l => statistics[l.Name]).ToList());
    }

    /// <summary>The full-precision model calibrated.</summary>
    public IQuantizableModel Model { get; }
    public IReadOnlyList<ModelRow> Rows { get; }
    public CalibrationCollector.Options Options { get; }
    /// <summary>The layers to quantize, in forward order.</summary>
    public IReadOnlyList<QuantizableLayer> Layers { get; }
    public IReadOnlyDictionary<string, ModalityStatistics> Statistics { get; }
    /// <summary>r_ℓ per layer: the weight of image tokens in A, b and G (1 where a layer sees one modality).</summary>
    public IReadOnlyDictionary<string, double> VisionWeights { get; }

    /// <summary>Statistics of <paramref name="layers"/> recollected on <paramref name="model"/> (a partly quantized copy).</summary>
    internal Dictionary<string, ModalityStatistics> Recollect(IQuantizableModel model, IReadOnlyList<QuantizableLayer> layers,
                                                             IProgress<QuantizationProgress>? progress) =>
        StatisticsCollector.Collect(model, Rows, layers, Options.BatchSize, progress, "recalibrate");

    /// <summary>MBQ's rule (algorithm.md §7.5): r_ℓ = mean_vision|δ| / mean_text|δ|, floored at the median over layers.</summary>
    internal static Dictionary<string, double> ModalityRatios(IReadOnlyList<ModalityStatistics> stats)
    {
        var raw = stats.Where(s => s.RawModalityRatio is not null).Select(s => s.RawModalityRatio!.Value).OrderBy(r => r).ToList();
        double median = raw.Count == 0 ? 1 : raw.Count % 2 == 1 ? raw[raw.Count / 2] : 0.5 * (raw[raw.Count / 2 - 1] + raw[raw.Count / 2]);
        return stats.ToDictionary(s => s.Layer, s => s.RawModalityRatio is { } r ? Math.Max(r, median) : 1.0);
    }
}
