using Microsoft.ML;
using Microsoft.ML.Data;
using Msavq.MLNet.Models;
using Msavq.MLNet.Scoring;
using static TorchSharp.torch;

namespace Msavq.MLNet.Calibration;

/// <summary>
/// First estimator of the MSAVQ chain: runs the model over the calibration rows (forward and backward, hooks on
/// every layer to quantize) and accumulates per layer and modality A, b and G, and the modality ratio r_ℓ
/// (algorithm.md §8.2). Its transformer passes rows through and carries the statistics.
/// </summary>
public sealed class CalibrationCollector : IEstimator<CalibrationTransformer>
{
    /// <summary>Options of <see cref="CalibrationCollector"/>; defaults from <see cref="Defaults"/>.</summary>
    public sealed class Options
    {
        /// <summary>The model to quantize (it is not modified; the quantizer works on a copy).</summary>
        public IQuantizableModel Model { get; set; } = null!;
        /// <summary>The image column (a vector of bytes); null for a text-only model, whose rows carry no image.</summary>
        public string? ImageColumnName { get; set; } = Defaults.ImageColumn;
        public string TextColumnName { get; set; } = Defaults.TextColumn;
        public string AnswerColumnName { get; set; } = Defaults.AnswerColumn;
        public int BatchSize { get; set; } = Defaults.CalibrationBatchSize;
        public CalibrationMode Mode { get; set; } = Defaults.Mode;
        /// <summary>Which parts of the model to quantize.</summary>
        public LayerRole[] Roles { get; set; } = Defaults.Roles;
        /// <summary>Explicit layer names (overrides <see cref="Roles"/>); each must be one of the model's quantizable layers.</summary>
        public string[]? LayerNames { get; set; }
        public IProgress<QuantizationProgress>? Progress { get; set; }
    }

    private readonly Options _options;

    public CalibrationCollector(Options options)
    {
        _options = options ?? throw new ArgumentNullException(nameof(options));
        if (options.Model is null) throw new ArgumentNullException(nameof(options), "Options.Model is required.");
        if (options.BatchSize < 1) throw new ArgumentOutOfRangeException(nameof(options), $"BatchSize must be >= 1, got {options.BatchSize}.");
        SelectLayers(); // fail at construction on unknown layer names
    }

    public SchemaShape GetOutputSchema(SchemaShape inputSchema)
    {
        if (_options.ImageColumnName is { } image) CheckColumn(inputSchema, image, isImage: true);
        CheckColumn(inputSchema, _options.TextColumnName, isImage: false);
        CheckColumn(inputSchema, _options.AnswerColumnName, isImage: false);
        return inputSchema;
    }

    public CalibrationTransformer Fit(IDataView input)
    {
        var rows = CalibrationRows.Read(input, _options.ImageColumnName, _options.TextColumnName, _options.AnswerColumnName);
        var layers = SelectLayers();
        foreach (var l in layers)
            if (!l.Module.weight.isfinite().all().item<bool>())
                throw new ArgumentException($"Layer '{l.Name}' has non-finite weights; nothing to calibrate.");
        var stats = StatisticsCollector.Collect(_options.Model, rows, layers, _options.BatchSize, _options.Progress, "calibrate");
        return new CalibrationTransformer(new CalibrationResult(_options.Model, rows, _options, layers, stats));
    }

    private IReadOnlyList<QuantizableLayer> SelectLayers()
    {
        var all = _options.Model.QuantizableLayers;
        if (_options.LayerNames is { } names)
        {
            var byName = all.ToDictionary(l => l.Name);
            var unknown = names.Where(n => !byName.ContainsKey(n)).ToList();
            if (unknown.Count > 0)
                throw new ArgumentException($"The model has no quantizable layer named {string.Join(", ", unknown.Select(u => $"'{u}'"))}.");
            return all.Where(l => names.Contains(l.Name)).ToList();
        }
        var chosen = all.Where(l => _options.Roles.Contains(l.Role)).ToList();
        if (chosen.Count == 0)
            throw new ArgumentException($"The model has no quantizable layers with role(s) {string.Join(", ", _options.Roles)}.");
        return chosen;
    }

    private static void CheckColumn(SchemaShape schema, string name, bool isImage)
    {
        var found = schema.Where(c => c.Name == name).ToList();
        if (found.Count == 0)
            throw new ArgumentOutOfRangeException(name, $"Column '{name}' not found in the calibration data.");
        var col = found[^1];
        if (isImage && (col.Kind != SchemaShape.Column.VectorKind.Vector && col.Kind != SchemaShape.Column.VectorKind.VariableVector
                        || col.ItemType != NumberDataViewType.Byte))
            throw new ArgumentOutOfRangeException(name, $"Column '{name}' has type {col.ItemType} ({col.Kind}); expected a vector of Byte.");
        if (!isImage && (col.Kind != SchemaShape.Column.VectorKind.Scalar || col.ItemType is not TextDataViewType))
            throw new ArgumentOutOfRangeException(name, $"Column '{name}' has type {col.ItemType} ({col.Kind}); expected String (text).");
    }
}

/// <summary>Passes rows through; the view it returns carries the calibration statistics to the next estimator.</summary>
public sealed class CalibrationTransformer : PassThroughTransformer
{
    internal CalibrationTransformer(CalibrationResult result) => Result = result;

    public CalibrationResult Result { get; }

    public override IDataView Transform(IDataView input) => new CarryingDataView(input, Result, plan: null);
}
