using Microsoft.ML;
using Microsoft.ML.Data;
using Msavq.MLNet.Calibration;
using Msavq.MLNet.Models;
using Msavq.MLNet.Sensitivity;

namespace Msavq.MLNet;

/// <summary>The MSAVQ estimators, reached from the context: <c>ml.Msavq()</c> (TransformsCatalog cannot reach it).</summary>
public sealed class MsavqCatalog
{
    internal MsavqCatalog(MLContext ml) => Context = ml;

    public MLContext Context { get; }

    /// <summary>
    /// Collect per-layer calibration statistics of <paramref name="model"/> over image + text rows
    /// (<paramref name="imageColumn"/> null for a text-only model).
    /// </summary>
    public CalibrationCollector CollectCalibration(IQuantizableModel model, string? imageColumn = Defaults.ImageColumn,
        string textColumn = Defaults.TextColumn, string answerColumn = Defaults.AnswerColumn) =>
        new(new CalibrationCollector.Options
        {
            Model = model, ImageColumnName = imageColumn, TextColumnName = textColumn, AnswerColumnName = answerColumn,
        }, Context);

    /// <remarks>
    /// The chain works where the model is and never moves it; <see cref="MLContext.GpuDeviceId"/> and
    /// <see cref="MLContext.FallbackToCpu"/> are checked against the model's device when it is fitted (see README, Limitations).
    /// </remarks>
    public CalibrationCollector CollectCalibration(CalibrationCollector.Options options) => new(options, Context);

    /// <summary>Estimate salience and allocate bits under an all-in budget of <paramref name="targetBitsPerWeight"/>.</summary>
    public SensitivityEstimator EstimateSensitivity(double targetBitsPerWeight = Defaults.TargetBitsPerWeight,
        QuantizationMethod method = Defaults.Method, int vectorDimension = Defaults.VectorDimension) =>
        new(new SensitivityEstimator.Options
        {
            TargetBitsPerWeight = targetBitsPerWeight, Method = method, VectorDimension = vectorDimension,
        });

    public SensitivityEstimator EstimateSensitivity(SensitivityEstimator.Options options) => new(options);

    /// <summary>
    /// Quantize the planned layers and return the scoring transformer (<paramref name="scoreRows"/> false for a model
    /// that does not answer questions: its transformer carries the quantized network and adds no answers).
    /// <paramref name="featureColumnName"/>: the vector column a model that maps rows to vectors adds (a sentence
    /// embedding, an ONNX model's output; <see cref="MixedPrecisionVqEstimator.Options.FeatureColumnName"/>).
    /// </summary>
    public MixedPrecisionVqEstimator QuantizeMixedPrecisionVq(int seed = Defaults.Seed, bool scoreRows = true, string? featureColumnName = null) =>
        new(Context, new MixedPrecisionVqEstimator.Options { Seed = seed, ScoreRows = scoreRows, FeatureColumnName = featureColumnName });

    public MixedPrecisionVqEstimator QuantizeMixedPrecisionVq(MixedPrecisionVqEstimator.Options options) => new(Context, options);

    /// <summary>Save the fitted pipeline with its quantized layers in one ML.NET zip (same as <see cref="MsavqPipeline.Save"/>).</summary>
    public void Save(ITransformer pipeline, DataViewSchema inputSchema, string path) =>
        MsavqPipeline.Save(Context, pipeline, inputSchema, path);

    /// <summary>Load what <see cref="Save"/> wrote (same as <see cref="MsavqPipeline.Load"/>); a plain Model.Load cannot.</summary>
    public TransformerChain<MixedPrecisionVqTransformer> Load(string path, out DataViewSchema inputSchema) =>
        MsavqPipeline.Load(Context, path, out inputSchema);
}

public static class MsavqCatalogExtensions
{
    /// <summary>The MSAVQ catalog of this context.</summary>
    public static MsavqCatalog Msavq(this MLContext ml) => new(ml ?? throw new ArgumentNullException(nameof(ml)));
}
