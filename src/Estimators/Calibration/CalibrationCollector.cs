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
        /// <summary>The text column; null for an image-only model (an image featurizer), whose rows carry no text.</summary>
        public string? TextColumnName { get; set; } = Defaults.TextColumn;
        /// <summary>The answer (target) column; null for a model whose objective needs no targets (an image featurizer's views).</summary>
        public string? AnswerColumnName { get; set; } = Defaults.AnswerColumn;
        public int BatchSize { get; set; } = Defaults.CalibrationBatchSize;
        public CalibrationMode Mode { get; set; } = Defaults.Mode;
        /// <summary>
        /// Which parts of the model to quantize. The default, the language model (algorithm.md §8.1), means the whole
        /// model for one that has no language part (an image featurizer).
        /// </summary>
        public LayerRole[] Roles { get; set; } = Defaults.Roles;
        /// <summary>Explicit layer names (overrides <see cref="Roles"/>); each must be one of the model's quantizable layers.</summary>
        public string[]? LayerNames { get; set; }
        public IProgress<QuantizationProgress>? Progress { get; set; }
        /// <summary>
        /// Whether the quantizer frees the statistics as it uses them (each layer's once it is quantized, the rest and
        /// the rows when its fit ends), so that a fitted chain keeps nothing of the calibration. Null (default): yes
        /// when the collector starts a chain with <see cref="Append{TTrans}"/> — the statistics belong to that one
        /// fit —, no when it is fitted on its own, so its result can feed several fits until it is disposed.
        /// </summary>
        public bool? ReleaseAfterQuantization { get; set; }
    }

    private readonly Options _options;
    /// <summary>True for the copy <see cref="Append{TTrans}"/> puts at the head of a chain.</summary>
    private readonly bool _ownedByChain;
    /// <summary>The context this collector came from (<c>ml.Msavq()</c>), whose device request <see cref="Fit"/> checks.</summary>
    private readonly MLContext? _context;

    /// <remarks>
    /// Made this way it has no <see cref="MLContext"/>, so it checks no device request; <c>ml.Msavq().CollectCalibration</c>
    /// checks the context's (<see cref="ContextDevice"/>).
    /// </remarks>
    public CalibrationCollector(Options options) : this(options, context: null, ownedByChain: false)
    {
    }

    internal CalibrationCollector(Options options, MLContext? context) : this(options, context, ownedByChain: false)
    {
    }

    private CalibrationCollector(Options options, MLContext? context, bool ownedByChain)
    {
        _ownedByChain = ownedByChain;
        _context = context;
        _options = options ?? throw new ArgumentNullException(nameof(options));
        if (options.Model is null) throw new ArgumentNullException(nameof(options), "Options.Model is required.");
        if (options.BatchSize < 1) throw new ArgumentOutOfRangeException(nameof(options), $"BatchSize must be >= 1, got {options.BatchSize}.");
        SelectLayers(); // fail at construction on unknown layer names
    }

    /// <summary>
    /// Starts a chain with this collector, as ML.NET's <c>Append</c> does, whose fit owns the statistics: its quantizer
    /// frees them as it goes (see <see cref="Options.ReleaseAfterQuantization"/>), and the fitted chain holds only what
    /// scoring needs.
    /// </summary>
    public EstimatorChain<TTrans> Append<TTrans>(IEstimator<TTrans> estimator, TransformerScope scope = TransformerScope.Everything)
        where TTrans : class, ITransformer
    {
        ArgumentNullException.ThrowIfNull(estimator);
        return new EstimatorChain<ITransformer>().Append(new CalibrationCollector(_options, _context, ownedByChain: true), scope).Append(estimator, scope);
    }

    public SchemaShape GetOutputSchema(SchemaShape inputSchema)
    {
        if (_options.ImageColumnName is { } image) CheckColumn(inputSchema, image, isImage: true);
        if (_options.TextColumnName is { } text) CheckColumn(inputSchema, text, isImage: false);
        if (_options.AnswerColumnName is { } answer) CheckColumn(inputSchema, answer, isImage: false);
        if (_options.ImageColumnName is null && _options.TextColumnName is null)
            throw new ArgumentException("Neither an image nor a text column is named: calibration needs one of them.");
        return inputSchema;
    }

    /// <exception cref="InvalidOperationException">The context asks for a device the model is not on (<see cref="ContextDevice"/>).</exception>
    public CalibrationTransformer Fit(IDataView input)
    {
        ContextDevice.Check(_context, _options.Model.Device);
        var rows = CalibrationRows.Read(input, _options.ImageColumnName, _options.TextColumnName, _options.AnswerColumnName);
        // Every row before any work: the model names what it cannot calibrate on (an answer outside its vocabulary).
        for (int i = 0; i < rows.Count; i++)
            if (_options.Model.RowProblem(rows[i]) is { } problem)
                throw new ArgumentException($"Calibration row {i}{(string.IsNullOrEmpty(rows[i].Text) ? "" : $" ('{rows[i].Text}')")}: {problem}.");
        var layers = SelectLayers();
        using (NewDisposeScope())
            foreach (var l in layers)
                if (!l.Module.weight.isfinite().all().item<bool>())
                    throw new ArgumentException($"Layer '{l.Name}' has non-finite weights; nothing to calibrate.");
        var stats = StatisticsCollector.Collect(_options.Model, rows, layers, _options.BatchSize, _options.Progress, "calibrate");
        return new CalibrationTransformer(new CalibrationResult(_options.Model, rows, _options, layers, stats,
                                                                _options.ReleaseAfterQuantization ?? _ownedByChain));
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
        var chosen = ReferenceEquals(_options.Roles, Defaults.Roles) ? Defaults.Layers(_options.Model).ToList()
            : all.Where(l => _options.Roles.Contains(l.Role)).ToList();
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
/// <remarks>It owns its <see cref="Result"/>: disposing it (or the fitted chain that holds it) frees the statistics.</remarks>
public sealed class CalibrationTransformer : PassThroughTransformer, IDisposable
{
    internal CalibrationTransformer(CalibrationResult result) => Result = result;

    public CalibrationResult Result { get; }

    public override IDataView Transform(IDataView input) => new CarryingDataView(input, Result, plan: null);

    /// <summary>Frees the statistics and lets go of the rows and the model (<see cref="CalibrationResult.Dispose"/>).</summary>
    public void Dispose() => Result.Dispose();
}
