using Msavq.MLNet.Models;

namespace Msavq.MLNet.Calibration;

/// <summary>What <see cref="CalibrationCollector"/> learned: per-layer statistics by modality, and what is needed to
/// re-collect them on a partly quantized copy of the model (sequential mode).</summary>
/// <remarks>
/// Lifetime: it owns the statistics (float64 tensors, n² per layer and modality) and holds the calibration rows and
/// the full-precision model (not owned: never disposed here). <see cref="Dispose"/> frees the statistics and lets go
/// of the rows and the model. Who disposes it depends on how it was collected:
/// <list type="bullet">
/// <item>In a chain built with <c>CollectCalibration(…).Append(…)</c> the chain owns it: the quantizer frees each
/// layer's statistics as soon as that layer is quantized and disposes the rest when its fit ends (or when the chain's
/// fit fails), so the fitted <c>TransformerChain</c> keeps nothing of the calibration.</item>
/// <item>Fitted on its own (<c>collector.Fit(data)</c>) it can feed several sensitivity estimators and quantizers
/// (a benchmark compares methods on one calibration): nothing frees it but <see cref="Dispose"/>, of it or of the
/// <see cref="CalibrationTransformer"/> that returned it.</item>
/// </list>
/// <see cref="CalibrationCollector.Options.ReleaseAfterQuantization"/> chooses explicitly.
/// </remarks>
public sealed class CalibrationResult : IDisposable
{
    private IQuantizableModel? _model;
    private IReadOnlyList<ModelRow>? _rows;
    private CalibrationCollector.Options? _options;
    private IReadOnlyList<QuantizableLayer>? _layers;
    private Dictionary<string, ModalityStatistics>? _statistics;
    private readonly HashSet<string> _released = new();

    internal CalibrationResult(IQuantizableModel model, IReadOnlyList<ModelRow> rows, CalibrationCollector.Options options,
                               IReadOnlyList<QuantizableLayer> layers, Dictionary<string, ModalityStatistics> statistics,
                               bool releaseAfterQuantization)
    {
        _model = model; _rows = rows; _options = options; _layers = layers; _statistics = statistics;
        ReleaseAfterQuantization = releaseAfterQuantization;
        VisionWeights = ModalityRatios(layers.Select(l => statistics[l.Name]).ToList());
    }

    /// <summary>The full-precision model calibrated.</summary>
    public IQuantizableModel Model => _model ?? throw Released();
    public IReadOnlyList<ModelRow> Rows => _rows ?? throw Released();
    public CalibrationCollector.Options Options => _options ?? throw Released();
    /// <summary>The layers to quantize, in forward order.</summary>
    public IReadOnlyList<QuantizableLayer> Layers => _layers ?? throw Released();
    public IReadOnlyDictionary<string, ModalityStatistics> Statistics => _statistics ?? throw Released();
    /// <summary>r_ℓ per layer: the weight of image tokens in A, b and G (1 where a layer sees one modality).</summary>
    public IReadOnlyDictionary<string, double> VisionWeights { get; }
    /// <summary>Whether the quantizer frees the statistics as it uses them (the result belongs to one chain's fit).</summary>
    public bool ReleaseAfterQuantization { get; }
    public bool IsDisposed => _statistics is null;

    /// <summary>One layer's statistics, or a clear error when they were freed already.</summary>
    internal ModalityStatistics StatisticsOf(string layer)
    {
        if (_released.Contains(layer)) throw Released($"the statistics of layer '{layer}' were freed once it was quantized");
        return Statistics[layer];
    }

    /// <summary>Frees one layer's statistics once it is quantized, when this result belongs to one chain's fit.</summary>
    internal void ReleaseLayer(string layer)
    {
        if (!ReleaseAfterQuantization || _statistics is null || !_released.Add(layer)) return;
        _statistics[layer].Dispose();
    }

    /// <summary>Disposes this result when it belongs to one chain's fit (its quantizer is done, or the fit failed).</summary>
    internal void ReleaseIfOwnedByChain()
    {
        if (ReleaseAfterQuantization) Dispose();
    }

    /// <summary>Statistics of <paramref name="layers"/> recollected on <paramref name="model"/> (a partly quantized copy).</summary>
    internal Dictionary<string, ModalityStatistics> Recollect(IQuantizableModel model, IReadOnlyList<QuantizableLayer> layers,
                                                             IProgress<QuantizationProgress>? progress) =>
        StatisticsCollector.Collect(model, Rows, layers, Options.BatchSize, progress, "recalibrate");

    /// <summary>Frees the statistics and lets go of the rows and the model (which is not disposed: it is the caller's).</summary>
    public void Dispose()
    {
        if (_statistics is null) return;
        foreach (var (name, s) in _statistics)
            if (!_released.Contains(name)) s.Dispose();
        _statistics = null;
        _model = null; _rows = null; _options = null; _layers = null;
    }

    private ObjectDisposedException Released(string? what = null) => new(nameof(CalibrationResult),
        (what ?? "the calibration was released") + ReleaseAfterQuantization switch
        {
            true => ": a chain built with CollectCalibration(…).Append(…) frees its statistics as its quantizer uses them. " +
                    "Fit the CalibrationCollector on its own (or set Options.ReleaseAfterQuantization = false) to reuse them.",
            false => " (CalibrationResult.Dispose, or the CalibrationTransformer's).",
        });

    /// <summary>MBQ's rule (algorithm.md §7.5): r_ℓ = mean_vision|δ| / mean_text|δ|, floored at the median over layers.</summary>
    internal static Dictionary<string, double> ModalityRatios(IReadOnlyList<ModalityStatistics> stats)
    {
        var raw = stats.Where(s => s.RawModalityRatio is not null).Select(s => s.RawModalityRatio!.Value).OrderBy(r => r).ToList();
        double median = raw.Count == 0 ? 1 : raw.Count % 2 == 1 ? raw[raw.Count / 2] : 0.5 * (raw[raw.Count / 2 - 1] + raw[raw.Count / 2]);
        return stats.ToDictionary(s => s.Layer, s => s.RawModalityRatio is { } r ? Math.Max(r, median) : 1.0);
    }
}
