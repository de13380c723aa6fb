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
public sealed class MixedPrecisionVqTransformer : ITransformer
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
        _mapping = ml.Transforms.CustomMapping<VqaScoringInput, VqaScoringOutput>((i, o) => Score(vqa, i, o), Msavq.ContractName,
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

    /// <summary>Writes the quantized layers to a .msavq file (atomically; docs/quantized-format.md).</summary>
    public void SaveQuantized(string path) => QuantizedModelFile.Save(path, Quantized);

    /// <summary>
    /// A scoring transformer from a .msavq file and the model it was quantized from (architecture and the layers kept
    /// in full precision): a copy of <paramref name="baseModel"/> gets the stored weights.
    /// </summary>
    public static MixedPrecisionVqTransformer LoadQuantized(MLContext ml, string path, IQuantizableModel baseModel,
        DataViewSchema inputSchema, string imageColumn = "Image", string questionColumn = "Question")
    {
        var stored = QuantizedModelFile.Load(path);
        var copy = baseModel.Clone();
        var byName = copy.QuantizableLayers.ToDictionary(l => l.Name);
        foreach (var l in stored.Layers)
        {
            if (!byName.TryGetValue(l.Name, out var target))
                throw new ArgumentException($"{path}: layer '{l.Name}' is not a quantizable layer of the given model.");
            if (target.Module.out_features != l.Rows || target.Module.in_features != l.Columns)
                throw new ArgumentException($"{path}: layer '{l.Name}' is {l.Rows}×{l.Columns} in the file but {target.Module.out_features}×{target.Module.in_features} in the model.");
            using var _ = no_grad();
            using var w = tensor(l.Dequantize(), new long[] { l.Rows, l.Columns }, ScalarType.Float32);
            target.Module.weight.copy_(w);
        }
        var reports = stored.Layers.Select(l => new QuantizedLayerReport(l.Name, l.Rows, l.Columns, stored.Method,
            l.IndexBits() / ((long)l.Rows * l.Columns), (l.StoredBits() - l.IndexBits()) / ((long)l.Rows * l.Columns),
            l.Kind == QuantizedKind.Scalar ? l.Groups : l.CodebookSizes.Length, double.NaN, 0)).ToList();
        return new MixedPrecisionVqTransformer(ml, copy, reports, stored, inputSchema, imageColumn, questionColumn);
    }

    public bool IsRowToRowMapper => true;

    public DataViewSchema GetOutputSchema(DataViewSchema inputSchema) => Mapping(inputSchema).GetOutputSchema(inputSchema);

    public IDataView Transform(IDataView input) => Mapping(input.Schema).Transform(input);

    public IRowToRowMapper GetRowToRowMapper(DataViewSchema inputSchema) => Mapping(inputSchema).GetRowToRowMapper(inputSchema);

    // Saves as its CustomMapping (contract Msavq.ContractName); Msavq.Save adds the quantized layers to the zip.
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
        using var batch = model.Encode(new[] { new VqaInput(input.Image, input.Question) });
        var p = model.Predict(batch);
        output.PredictedAnswer = p.Answers[0];
        output.Score = p.Scores[0];
    }
}
