using Microsoft.Data.Analysis;
using Microsoft.ML;
using Microsoft.ML.Data;
using Msavq.MLNet.Format;
using Msavq.MLNet.Models;
using Msavq.MLNet.Scoring;
using static TorchSharp.torch;

namespace Msavq.MLNet;

/// <summary>
/// Runs a quantized VLM over rows: <see cref="Transform"/> adds <c>PredictedAnswer</c> (text) and <c>Score</c>
/// (float, the answer's probability), lazily — nothing is computed until a cursor asks. Works with
/// <c>PredictionEngine</c>. Knows nothing of fitting: it receives the quantized model and the per-layer report.
/// </summary>
public sealed class MixedPrecisionVqTransformer : ITransformer, IDisposable
{
    public const string PredictedAnswerColumn = "PredictedAnswer";
    public const string ScoreColumn = "Score";

    private readonly MLContext _ml;
    /// <summary>The VQA scoring mapping; null when rows pass through.</summary>
    private readonly ITransformer? _mapping;

    /// <param name="model">The quantized model (its weights already replaced).</param>
    /// <param name="layers">One entry per quantized layer.</param>
    /// <param name="inputSchema">A schema with the image and question columns (their types are taken from it).</param>
    /// <param name="imageColumn">The image column the scoring reads; null: rows pass through.</param>
    /// <remarks>
    /// Only an <see cref="IVqaModel"/> scores rows (PredictedAnswer, Score), and only given an image column. Otherwise
    /// (a sentence encoder, or scoring turned off) the transformer passes rows through and the quantized network is
    /// <see cref="Model"/>.
    /// </remarks>
    public MixedPrecisionVqTransformer(MLContext ml, IQuantizableModel model, IReadOnlyList<QuantizedLayerReport> layers,
                                       QuantizedModel quantized, DataViewSchema inputSchema, string? imageColumn, string questionColumn)
    {
        Quantized = quantized ?? throw new ArgumentNullException(nameof(quantized));
        _ml = ml ?? throw new ArgumentNullException(nameof(ml));
        Model = model ?? throw new ArgumentNullException(nameof(model));
        Layers = layers;
        ImageColumn = imageColumn;
        QuestionColumn = questionColumn;
        if (model is not IVqaModel vqa || imageColumn is null) return;
        ScoringSchema.Validate(inputSchema, imageColumn, questionColumn);
        var definition = ScoringSchema.InputDefinition(inputSchema, imageColumn, questionColumn);
        var empty = ml.Data.LoadFromEnumerable(Array.Empty<VqaScoringInput>(), definition);
        _mapping = ml.Transforms.CustomMapping<VqaScoringInput, VqaScoringOutput>((i, o) => Score(vqa, i, o), MsavqPipeline.ContractName,
            inputSchemaDefinition: definition).Fit(empty);
    }

    /// <summary>The quantized model.</summary>
    public IQuantizableModel Model { get; }
    /// <summary>The quantized layers as stored (codes, codebooks, scales), which <see cref="Model"/> runs with.</summary>
    public QuantizedModel Quantized { get; }
    public IReadOnlyList<QuantizedLayerReport> Layers { get; }
    public string? ImageColumn { get; }
    public string QuestionColumn { get; }

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
        DataViewSchema inputSchema, string imageColumn = "Image", string questionColumn = "Question")
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
            return new MixedPrecisionVqTransformer(ml, copy, QuantizedLayerReport.FromStored(stored), stored, inputSchema, imageColumn, questionColumn);
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

    // Saves as its CustomMapping (contract MsavqPipeline.ContractName); Msavq.Save adds the quantized layers to the zip.
    void ICanSaveModel.Save(ModelSaveContext ctx) => ((ICanSaveModel)(_mapping
        ?? throw new NotSupportedException($"Only a VQA model's pipeline can be saved; {Model.GetType().Name} has no scoring mapping (use SaveQuantized).")))
        .Save(ctx);

    private static readonly TransformerChain<ITransformer> Identity = new();

    /// <summary>The scoring mapping after checking the columns, or the identity for a model that does not score rows.</summary>
    private ITransformer Mapping(DataViewSchema schema)
    {
        if (_mapping is null) return Identity;
        ScoringSchema.Validate(schema, ImageColumn!, QuestionColumn);
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
