using Microsoft.Data.Analysis;
using Microsoft.ML;
using Microsoft.ML.Data;
using Msavq.MLNet.Format;
using Msavq.MLNet.Models;
using Msavq.MLNet.Scoring;
using static TorchSharp.torch;

namespace Msavq.MLNet;

/// <summary>
/// Runs a quantized model over rows, lazily — nothing is computed until a cursor asks; works with
/// <c>PredictionEngine</c>. A VLM's <see cref="Transform"/> adds <c>PredictedAnswer</c> (text) and <c>Score</c> (float,
/// the answer's probability); a model that maps rows to vectors (<see cref="IFeatureModel"/>: a sentence encoder, an
/// ONNX model) adds them as a Single vector column (<see cref="FeatureColumn"/>). Knows nothing of fitting: it receives
/// the quantized model and the per-layer report.
/// </summary>
public sealed class MixedPrecisionVqTransformer : ITransformer, IDisposable
{
    public const string PredictedAnswerColumn = "PredictedAnswer";
    public const string ScoreColumn = "Score";

    private readonly MLContext _ml;
    /// <summary>The VQA scoring mapping and/or the feature mapping (chained); null when rows pass through.</summary>
    private readonly ITransformer? _mapping;
    private readonly ITransformer? _vqa, _features;

    /// <param name="model">The quantized model (its weights already replaced).</param>
    /// <param name="layers">One entry per quantized layer.</param>
    /// <param name="inputSchema">A schema with the image and question columns (their types are taken from it).</param>
    /// <param name="imageColumn">The image column the VQA scoring reads; null: no PredictedAnswer and Score.</param>
    /// <param name="featureColumn">The vector column an <see cref="IFeatureModel"/> adds; null: none.</param>
    /// <param name="featureInputColumn">The column the vectors are computed from (text or image, as the model reads);
    /// null: <paramref name="questionColumn"/> for a text model, <paramref name="imageColumn"/> (or "Image") for an image model.</param>
    /// <remarks>
    /// Only an <see cref="IVqaModel"/> scores rows (PredictedAnswer, Score), and only given an image column; only an
    /// <see cref="IFeatureModel"/> adds vectors, and only given a feature column. Otherwise the transformer passes rows
    /// through, and the quantized network is <see cref="Model"/>.
    /// </remarks>
    /// <exception cref="ArgumentException"><paramref name="featureColumn"/> is set but the model maps rows to no vectors.</exception>
    public MixedPrecisionVqTransformer(MLContext ml, IQuantizableModel model, IReadOnlyList<QuantizedLayerReport> layers,
                                       QuantizedModel quantized, DataViewSchema inputSchema, string? imageColumn, string questionColumn,
                                       string? featureColumn = null, string? featureInputColumn = null)
    {
        Quantized = quantized ?? throw new ArgumentNullException(nameof(quantized));
        _ml = ml ?? throw new ArgumentNullException(nameof(ml));
        Model = model ?? throw new ArgumentNullException(nameof(model));
        Layers = layers;
        ImageColumn = imageColumn;
        QuestionColumn = questionColumn;
        if (model is IVqaModel vqa && imageColumn is not null)
        {
            ScoringSchema.Validate(inputSchema, imageColumn, questionColumn);
            var definition = ScoringSchema.InputDefinition(inputSchema, imageColumn, questionColumn);
            var empty = ml.Data.LoadFromEnumerable(Array.Empty<VqaScoringInput>(), definition);
            _vqa = ml.Transforms.CustomMapping<VqaScoringInput, VqaScoringOutput>((i, o) => Score(vqa, i, o), MsavqPipeline.ContractName,
                inputSchemaDefinition: definition).Fit(empty);
        }
        if (featureColumn is not null)
        {
            var features = model as IFeatureModel ?? throw new ArgumentException(
                $"{model.GetType().Name} maps rows to no vectors (it is not an IFeatureModel): leave the feature column out.", nameof(featureColumn));
            FeatureColumn = featureColumn;
            FeatureInputColumn = featureInputColumn ?? (features.Source == FeatureSource.Text ? questionColumn : imageColumn ?? "Image");
            var schema = _vqa?.GetOutputSchema(inputSchema) ?? inputSchema;
            _features = FeatureScoring.Fit(ml, features, schema, FeatureInputColumn, featureColumn);
        }
        _mapping = _vqa is null ? _features : _features is null ? _vqa : new TransformerChain<ITransformer>(_vqa, _features);
    }

    /// <summary>The quantized model.</summary>
    public IQuantizableModel Model { get; }
    /// <summary>The quantized layers as stored (codes, codebooks, scales), which <see cref="Model"/> runs with.</summary>
    public QuantizedModel Quantized { get; }
    public IReadOnlyList<QuantizedLayerReport> Layers { get; }
    public string? ImageColumn { get; }
    public string QuestionColumn { get; }
    /// <summary>The vector column an <see cref="IFeatureModel"/> adds, or null.</summary>
    public string? FeatureColumn { get; }
    /// <summary>The text or image column <see cref="FeatureColumn"/> is computed from, or null.</summary>
    public string? FeatureInputColumn { get; }

    /// <summary>One row per quantized layer: shape, method, bits per weight (index + overhead), proxy error, time.</summary>
    public DataFrame Report => QuantizedLayerReport.ToDataFrame(Layers);

    /// <summary>All-in bits per weight over the quantized layers.</summary>
    public double BitsPerWeight => QuantizedLayerReport.AverageBitsPerWeight(Layers);

    /// <summary>Writes the quantized layers alone to a .msavq file (atomically; docs/quantized-format.md).</summary>
    public void SaveQuantized(string path) => QuantizedModelFile.Save(path, Quantized);

    /// <summary>
    /// A scoring transformer from a .msavq file and the model it was quantized from (architecture and the layers kept
    /// in full precision): a copy of <paramref name="baseModel"/> gets the stored weights.
    /// </summary>
    /// <exception cref="MsavqFormatException">The file is invalid, or <paramref name="baseModel"/> is not the model its
    /// layers were quantized from (<see cref="BaseModelFingerprint"/>, for files that record it).</exception>
    public static MixedPrecisionVqTransformer LoadQuantized(MLContext ml, string path, IQuantizableModel baseModel,
        DataViewSchema inputSchema, string imageColumn = "Image", string questionColumn = "Question", string? featureColumn = null)
    {
        if (!File.Exists(path)) throw new FileNotFoundException($"Quantized model file not found: {path}", path);
        ModelFile.Expect(path, ModelFileKind.QuantizedLayers);
        var stored = QuantizedModelFile.Load(path);
        // The layers were quantized from one model; on another they would load and answer wrongly.
        BaseModelFingerprint.Check(baseModel, stored, path);
        var copy = baseModel.Clone();
        try
        {
            StoredWeights.Write(copy, stored, path);
            return new MixedPrecisionVqTransformer(ml, copy, QuantizedLayerReport.FromStored(stored), stored, inputSchema,
                copy is IVqaModel ? imageColumn : null, questionColumn, featureColumn, copy is IFeatureModel { Source: FeatureSource.Image } ? imageColumn : null);
        }
        catch
        {
            (copy as IDisposable)?.Dispose();
            throw;
        }
    }

    /// <summary>
    /// Runs the quantized layers on their packed codes (<see cref="Kernels.QuantizedLinear"/>) instead of decoded fp32
    /// weights; for models that support it (<see cref="ISupportsLookupKernels"/>). Returns how many layers were swapped.
    /// </summary>
    public int UseLookupKernels(Kernels.LutKernelOptions? kernel = null, int smallBatchRows = 8, IEnumerable<string>? exactLayers = null) =>
        Model is ISupportsLookupKernels k
            ? k.UseLookupKernels(Quantized, kernel, smallBatchRows, exactLayers)
            : throw new NotSupportedException($"{Model.GetType().Name} cannot swap in look-up kernels (it does not implement ISupportsLookupKernels).");

    /// <summary>Frees the quantized model's native memory; the transformer cannot score afterwards.</summary>
    public void Dispose() => (Model as IDisposable)?.Dispose();

    public bool IsRowToRowMapper => true;

    public DataViewSchema GetOutputSchema(DataViewSchema inputSchema) => Mapping(inputSchema).GetOutputSchema(inputSchema);

    public IDataView Transform(IDataView input) => Mapping(input.Schema).Transform(input);

    public IRowToRowMapper GetRowToRowMapper(DataViewSchema inputSchema) => Mapping(inputSchema).GetRowToRowMapper(inputSchema);

    // Saves as its CustomMappings (contracts MsavqPipeline.ContractName, FeatureScoring.*Contract); MsavqPipeline.Save
    // adds the quantized layers and the model to the zip.
    void ICanSaveModel.Save(ModelSaveContext ctx) => ((ICanSaveModel)(_mapping
        ?? throw new NotSupportedException($"This transformer adds no column ({Model.GetType().Name}: no VQA scoring, no feature column), " +
                                           "so there is no pipeline to save: use SaveQuantized.")))
        .Save(ctx);

    private static readonly TransformerChain<ITransformer> Identity = new();

    /// <summary>The scoring mapping after checking the columns, or the identity for a model that does not score rows.</summary>
    private ITransformer Mapping(DataViewSchema schema)
    {
        if (_mapping is null) return Identity;
        if (_vqa is not null) ScoringSchema.Validate(schema, ImageColumn!, QuestionColumn);
        if (_features is not null) FeatureScoring.Validate(schema, (IFeatureModel)Model, FeatureInputColumn!);
        return _mapping;
    }

    // Called per row from cursor getters, possibly on several threads: no_grad and scopes are thread-local,
    // so they are opened here (architecture.md §6).
    internal static void Score(IVqaModel model, VqaScoringInput input, VqaScoringOutput output)
    {
        using var scope = NewDisposeScope();
        using var _ = no_grad();
        using var batch = model.Encode(new[] { new ModelRow(input.Image, input.Question) });
        var p = model.Predict(batch);
        output.PredictedAnswer = p.Answers[0];
        output.Score = p.Scores[0];
    }
}
