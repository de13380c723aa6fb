using Microsoft.ML;
using Microsoft.ML.Data;
using Msavq.MLNet.Calibration;
using Msavq.MLNet.Models;
using static TorchSharp.torch;

namespace Msavq.MLNet;

/// <summary>
/// Last estimator of the chain: quantizes every planned layer of a copy of the model (algorithm.md §8.4 for MSAVQ;
/// RTN, GPTQ or GPTVQ for the baseline presets), block by block, re-collecting statistics on the partly quantized
/// network in sequential mode. Yields a <see cref="MixedPrecisionVqTransformer"/> that scores with the quantized copy.
/// </summary>
/// <remarks>
/// Named after the method it exists for; the baselines run through the same estimator (the plan's method decides the
/// layer step, <see cref="LayerQuantizer"/>) so that a comparison differs only in that step.
/// </remarks>
public sealed class MixedPrecisionVqEstimator : IEstimator<MixedPrecisionVqTransformer>
{
    /// <summary>Options of <see cref="MixedPrecisionVqEstimator"/>; defaults from <see cref="Defaults"/>.</summary>
    public sealed class Options
    {
        /// <summary>β of the Newton shift (§8.4 step 1).</summary>
        public double Beta { get; set; } = Defaults.Beta;
        /// <summary>τ: the shift moves W at most τ times a 2-bit RTN error, measured in the A-metric.</summary>
        public double ShiftTrustRatio { get; set; } = Defaults.ShiftTrustRatio;
        /// <summary>Quantize the gradient-shifted W* instead of W (§8.4 step 1); see <see cref="Defaults.GradientShift"/>.</summary>
        public bool GradientShift { get; set; } = Defaults.GradientShift;
        /// <summary>Closed-form codebook update with assignments fixed (§8.4 step 9).</summary>
        public bool RefineCodebooks { get; set; } = true;
        /// <summary>
        /// MSAVQ: Adam steps of codebook fine-tuning after quantization, codes fixed, codebooks and row scales trained on
        /// KL(FP ‖ quantized) over the calibration rows (<see cref="FineTuning.CodebookFineTuner"/>); 0 = off. The
        /// baseline presets ignore it.
        /// </summary>
        public int FineTuneSteps { get; set; } = Defaults.FineTuneSteps;
        /// <summary>Adam's learning rate for <see cref="FineTuneSteps"/>.</summary>
        public double FineTuneLearningRate { get; set; } = Defaults.FineTuneLearningRate;
        /// <summary>Calibration rows per fine-tuning step.</summary>
        public int FineTuneBatchSize { get; set; } = Defaults.FineTuneBatchSize;
        /// <summary>MSAVQ sweeps the (ordered) columns first to last, as GPTQ and GPTVQ do, rather than LDLQ's last to first.</summary>
        public bool SweepForward { get; set; } = Defaults.SweepForward;
        /// <summary>GPTQ processes columns by decreasing diag(A), with groups fixed up front (act-order + static groups).</summary>
        public bool GptqActOrder { get; set; } = true;
        public double RelativeDamping { get; set; } = Defaults.RelativeDamping;
        public int KMeansIterations { get; set; } = Defaults.KMeansIterations;
        /// <summary>
        /// k-means assigns points with the fused SIMD kernel (no distance matrix) on the CPU. Default false: the kernel's
        /// direct-form distances round differently from the matmul form, so near-ties can resolve differently and the
        /// published curves, made with the matmul form, would not reproduce bit for bit.
        /// </summary>
        public bool FusedKMeans { get; set; }
        /// <summary>
        /// Fit each codebook on at most this many of its vectors (a seeded sample), then assign all of them; null
        /// (default) fits on all. Cuts k-means time on large layers; the codebooks see fewer vectors.
        /// </summary>
        public long? KMeansMaxPoints { get; set; }
        /// <summary>Seeds k-means; the same seed gives bit-identical weights.</summary>
        public int Seed { get; set; } = Defaults.Seed;
        /// <summary>
        /// Whether the fitted transformer scores rows (adds PredictedAnswer and Score). True (default) needs a model
        /// that answers questions (<see cref="IVqaModel"/>); false for any other model (a sentence encoder), whose
        /// transformer passes rows through and hands over the quantized network as its <c>Model</c> — and lets
        /// <c>EstimatorChain.Fit</c> propagate a schema without image or question columns.
        /// </summary>
        public bool ScoreRows { get; set; } = true;
        /// <summary>Columns the scoring transformer reads; null = those the calibration read.</summary>
        public string? ImageColumnName { get; set; }
        public string? TextColumnName { get; set; }
        /// <summary>
        /// The column the fitted transformer adds with each row's vector, for a model that maps rows to vectors
        /// (<c>IFeatureModel</c>: a sentence encoder's embedding, an ONNX model's output flattened per row), read from the
        /// text or image column as the model reads; a Single vector of the model's length, as <c>ApplyOnnxModel</c> adds
        /// a graph's outputs. Null (default): none. Independent of <see cref="ScoreRows"/>.
        /// </summary>
        public string? FeatureColumnName { get; set; }
        public IProgress<QuantizationProgress>? Progress { get; set; }
    }

    private readonly MLContext _ml;
    private readonly Options _options;

    public MixedPrecisionVqEstimator(MLContext ml, Options options)
    {
        _ml = ml ?? throw new ArgumentNullException(nameof(ml));
        _options = options ?? throw new ArgumentNullException(nameof(options));
        if (!(options.Beta >= 0 && options.Beta <= 1)) throw new ArgumentOutOfRangeException(nameof(options), $"Beta must be in [0, 1], got {options.Beta}.");
    }

    public SchemaShape GetOutputSchema(SchemaShape inputSchema)
    {
        var output = ScoredSchema(inputSchema);
        if (_options.FeatureColumnName is not { } feature) return output;
        // The model, known only at fit, decides whether the text or the image column is read (and the calibration which
        // one by default): a column the options name must be there; the column's length is the model's.
        foreach (var named in new[] { _options.TextColumnName, _options.ImageColumnName })
            if (named is not null && !inputSchema.Any(c => c.Name == named))
                throw new ArgumentOutOfRangeException(feature, $"The feature column '{feature}' is computed from column '{named}', which is not there.");
        return _ml.Transforms.CustomMapping<NoInput, Scoring.FeatureOutput>((_, _) => { }, null, null, Scoring.FeatureScoring.OutputDefinition(feature, 1))
            .GetOutputSchema(output);
    }

    /// <summary>A mapping that reads nothing: what the feature column's shape is propagated with.</summary>
    private sealed class NoInput;

    private SchemaShape ScoredSchema(SchemaShape inputSchema)
    {
        if (!_options.ScoreRows) return inputSchema;
        string image = _options.ImageColumnName ?? Defaults.ImageColumn, text = _options.TextColumnName ?? Defaults.TextColumn;
        if (!inputSchema.Any(c => c.Name == image))
            throw new ArgumentOutOfRangeException(image, $"Image column '{image}' not found.");
        if (!inputSchema.Any(c => c.Name == text))
            throw new ArgumentOutOfRangeException(text, $"Text column '{text}' not found.");
        // The scoring mapping's own estimator checks the input columns' types and adds PredictedAnswer and Score.
        var definition = Microsoft.ML.Data.SchemaDefinition.Create(typeof(Scoring.VqaScoringInput));
        var imageColumn = definition[nameof(Scoring.VqaScoringInput.Image)];   // found by its current name: fetched before the renames
        definition[nameof(Scoring.VqaScoringInput.Question)].ColumnName = text;
        imageColumn.ColumnName = image;
        return _ml.Transforms.CustomMapping<Scoring.VqaScoringInput, Scoring.VqaScoringOutput>((_, _) => { }, null, definition)
            .GetOutputSchema(inputSchema);
    }

    /// <remarks>
    /// When the calibration belongs to this fit's chain (<see cref="CalibrationResult.ReleaseAfterQuantization"/>),
    /// each layer's statistics are freed as soon as the layer is quantized and the rest of the calibration (rows, the
    /// full-precision model's reference) when the fit ends or fails; otherwise they are left to their owner.
    /// </remarks>
    public MixedPrecisionVqTransformer Fit(IDataView input)
    {
        var carried = CarryingDataView.From(input, nameof(MixedPrecisionVqEstimator), needPlan: true);
        var calib = carried.Calibration;
        try
        {
            return Fit(calib, carried.Plan!, input.Schema);
        }
        finally
        {
            calib.ReleaseIfOwnedByChain();
        }
    }

    private MixedPrecisionVqTransformer Fit(CalibrationResult calib, Sensitivity.BitAllocationPlan plan, DataViewSchema schema)
    {
        ContextDevice.Check(_ml, calib.Model.Device);
        if (_options.ScoreRows && calib.Model is not IVqaModel)
            throw new InvalidOperationException($"{calib.Model.GetType().Name} does not answer questions, so its rows cannot be scored: " +
                $"set {nameof(Options)}.{nameof(Options.ScoreRows)} = false to get the quantized network as the transformer's Model.");
        var copy = calib.Model.Clone();
        try
        {
            return Quantize(calib, plan, schema, copy);
        }
        catch
        {
            (copy as IDisposable)?.Dispose();   // a failed fit leaves no copy of the model behind
            throw;
        }
    }

    private MixedPrecisionVqTransformer Quantize(CalibrationResult calib, Sensitivity.BitAllocationPlan plan, DataViewSchema schema,
                                                 IQuantizableModel copy)
    {
        var byName = copy.QuantizableLayers.ToDictionary(l => l.Name);
        var planned = plan.Layers.ToDictionary(l => l.Layer);
        var missing = calib.Layers.Where(l => !byName.ContainsKey(l.Name) || !planned.ContainsKey(l.Name)).Select(l => l.Name).ToList();
        if (missing.Count > 0) throw new InvalidOperationException($"The model's layers do not match the plan: {string.Join(", ", missing)}.");

        var reports = new List<QuantizedLayerReport>();
        var stored = new List<Format.QuantizedLayer>();
        var blocks = calib.Layers.GroupBy(l => l.Block).OrderBy(g => g.Key).ToList();
        int done = 0;
        foreach (var block in blocks)
        {
            var layers = block.Select(l => byName[l.Name]).ToList();
            foreach (var l in layers)
            {
                var shape = l.Module.weight.shape;
                if (shape[0] != planned[l.Name].Rows || shape[1] != planned[l.Name].Columns)
                    throw new InvalidOperationException($"Layer '{l.Name}' is {shape[0]}×{shape[1]} but the plan says {planned[l.Name].Rows}×{planned[l.Name].Columns}.");
            }
            // Sequential: statistics of this block come from the network with every earlier block quantized.
            bool recollect = calib.Options.Mode == CalibrationMode.Sequential && done > 0;
            var stats = recollect ? calib.Recollect(copy, layers, _options.Progress) : null;
            try
            {
                foreach (var l in layers)
                {
                    _options.Progress?.Report(new QuantizationProgress("quantize", l.Name, done + 1, calib.Layers.Count));
                    var s = stats?[l.Name] ?? calib.StatisticsOf(l.Name);
                    using var result = LayerQuantizer.Quantize(l.Module.weight, s, planned[l.Name], plan.Precision, _options);
                    using (no_grad()) l.Module.weight.copy_(result.Weight);
                    reports.Add(result.Report);
                    stored.Add(result.Stored);
                    done++;
                    // The layer's full-precision statistics are not needed again (recollected ones go below).
                    calib.ReleaseLayer(l.Name);
                }
            }
            finally
            {
                if (stats is not null) foreach (var s in stats.Values) s.Dispose();
            }
        }
        // Fine-tuning is part of MSAVQ; the baselines are quantized as their papers do.
        if (_options.FineTuneSteps > 0 && plan.Method == QuantizationMethod.Msavq)
            stored = FineTuning.CodebookFineTuner.Run(calib.Model, copy, stored, calib.Rows, new FineTuning.CodebookFineTuneOptions
            {
                Steps = _options.FineTuneSteps, LearningRate = _options.FineTuneLearningRate, BatchSize = _options.FineTuneBatchSize,
                Seed = _options.Seed,
            }, _options.Progress).ToList();
        var options = new Dictionary<string, string>
        {
            ["target_bits_per_weight"] = plan.TargetBitsPerWeight.ToString("R", System.Globalization.CultureInfo.InvariantCulture),
            ["vector_dimension"] = plan.VectorDimension.ToString(System.Globalization.CultureInfo.InvariantCulture),
            ["mixed_precision"] = plan.MixedPrecision.ToString(), ["modality_weighting"] = plan.ModalityWeighting.ToString(),
            ["gradient_shift"] = _options.GradientShift.ToString(), ["mode"] = calib.Options.Mode.ToString(),
            ["fine_tune_steps"] = (plan.Method == QuantizationMethod.Msavq ? _options.FineTuneSteps : 0).ToString(System.Globalization.CultureInfo.InvariantCulture),
            ["calibration_rows"] = calib.Rows.Count.ToString(System.Globalization.CultureInfo.InvariantCulture),
            ["seed"] = _options.Seed.ToString(System.Globalization.CultureInfo.InvariantCulture),
        };
        // Binds the layers to the model they came from (checked when they are loaded onto a base model).
        if (Format.BaseModelFingerprint.Compute(copy, stored.Select(l => l.Name)) is { } fingerprint)
            options[Format.BaseModelFingerprint.OptionKey] = fingerprint;
        var quantized = new Format.QuantizedModel(plan.Method.ToString(), options, stored);
        return new MixedPrecisionVqTransformer(_ml, copy, reports, quantized, schema,
            _options.ScoreRows ? _options.ImageColumnName ?? calib.Options.ImageColumnName : null,
            _options.TextColumnName ?? calib.Options.TextColumnName ?? Defaults.TextColumn,
            _options.FeatureColumnName, FeatureInput(copy, calib));
    }

    /// <summary>The column an <see cref="IFeatureModel"/>'s vectors are computed from: the text or image column the calibration read (or the options name).</summary>
    private string? FeatureInput(IQuantizableModel model, CalibrationResult calib) =>
        _options.FeatureColumnName is null || model is not IFeatureModel f ? null
        : f.Source == FeatureSource.Text ? _options.TextColumnName ?? calib.Options.TextColumnName ?? Defaults.TextColumn
        : _options.ImageColumnName ?? calib.Options.ImageColumnName ?? Defaults.ImageColumn;
}
