using Microsoft.ML;
using Msavq.MLNet.Calibration;
using Msavq.MLNet.Quantization;

namespace Msavq.MLNet.Sensitivity;

/// <summary>
/// Second estimator of the chain: local (channel-group) and global (layer) salience, combined, and a structured bit
/// allocation under an all-in average budget that counts codebooks and permutations (algorithm.md §8.3). The
/// <see cref="QuantizationMethod"/> preset decides the kind of plan: uniform for the baselines, mixed for MSAVQ.
/// </summary>
public sealed class SensitivityEstimator : IEstimator<SensitivityTransformer>
{
    /// <summary>Options of <see cref="SensitivityEstimator"/>; defaults from <see cref="Defaults"/>.</summary>
    public sealed class Options
    {
        /// <summary>All-in average bits per weight over the quantized layers (indices + codebooks + scales + permutations).</summary>
        public double TargetBitsPerWeight { get; set; } = Defaults.TargetBitsPerWeight;
        public QuantizationMethod Method { get; set; } = Defaults.Method;
        /// <summary>d for the VQ methods.</summary>
        public int VectorDimension { get; set; } = Defaults.VectorDimension;
        /// <summary>
        /// Weights per codebook tile for MSAVQ (GPTVQ's is searched to fit the budget); null (default):
        /// <see cref="Defaults.WeightsPerCodebookFor"/>(<see cref="VectorDimension"/>) — 2,048 at d = 2, 65,536 at d = 4.
        /// </summary>
        public long? WeightsPerCodebook { get; set; }
        /// <summary>Ablation switch: false gives every tile the same codebook size.</summary>
        public bool MixedPrecision { get; set; } = true;
        /// <summary>Ablation switch: false drops r_ℓ (image tokens weigh 1) and the modality-affinity bins.</summary>
        public bool ModalityWeighting { get; set; } = true;
        /// <summary>Input columns per codebook tile (VQ methods); with modality weighting each group is an affinity bin.</summary>
        public int ColumnsPerGroup { get; set; } = Defaults.ColumnsPerGroup;
        /// <summary>MSAVQ: one fp16 scale per output row (16 bits per row, counted in the budget).</summary>
        public bool RowScales { get; set; } = Defaults.RowScales;
        /// <summary>MSAVQ: the second-order model allocation, shift and sweep share.</summary>
        public Curvature Curvature { get; set; } = Defaults.CurvatureModel;
        /// <summary>
        /// ε of the output factor's floor, b ← max(b, ε·mean(b)) (§8.2), in the salience and the layer step: rows
        /// (output channels) whose loss curvature is below ε·mean weigh as if at it. 1e-3 (default) keeps b nearly as
        /// measured; a large ε weighs every row alike (the layer-output proxy of GPTQ/GPTVQ).
        /// </summary>
        public double OutputFactorFloor { get; set; } = Defaults.OutputFactorFloor;
        /// <summary>MSAVQ: how input columns are ordered before tiling (with <see cref="ModalityWeighting"/> off, affinity falls back to contiguous).</summary>
        public ColumnGrouping ColumnGrouping { get; set; } = Defaults.Grouping;
        /// <summary>MSAVQ: the local sensitivity that scores channel groups.</summary>
        public LocalSalience LocalSalience { get; set; } = Defaults.Local;
        /// <summary>γ of the combined salience.</summary>
        public double GlobalExponent { get; set; } = Defaults.GlobalExponent;
        /// <summary>Distance between tiers in index bits per weight.</summary>
        public double TierStep { get; set; } = Defaults.TierStep;
        public double RelativeDamping { get; set; } = Defaults.RelativeDamping;
        public CodebookPrecision Precision { get; set; } = Defaults.Precision;
    }

    private readonly Options _options;

    public SensitivityEstimator(Options options)
    {
        _options = options ?? throw new ArgumentNullException(nameof(options));
        Validate(options);
    }

    /// <remarks>
    /// <c>EstimatorChain.Fit</c> asks every estimator for its output schema before fitting the first, so options that
    /// can never work (a budget that is not a positive number, a vector dimension the format does not store) fail here,
    /// before calibration runs. A budget that is valid but too small for the layers needs their shapes and is
    /// reported by <see cref="Fit"/> ("No … configuration meets …").
    /// </remarks>
    public SchemaShape GetOutputSchema(SchemaShape inputSchema)
    {
        Validate(_options);
        return inputSchema;
    }

    /// <exception cref="ArgumentOutOfRangeException">An option out of its range, named.</exception>
    private static void Validate(Options o)
    {
        static ArgumentOutOfRangeException Bad(string option, object value, string expected) =>
            new("options", value, $"{option} is {value}; {expected} expected.");
        if (!double.IsFinite(o.TargetBitsPerWeight) || o.TargetBitsPerWeight <= 0)
            throw Bad(nameof(o.TargetBitsPerWeight), o.TargetBitsPerWeight, "a positive number of bits per weight");
        if (!Enum.IsDefined(o.Method)) throw Bad(nameof(o.Method), o.Method, string.Join(", ", Enum.GetNames<QuantizationMethod>()));
        if (o.VectorDimension is not (1 or 2 or 4 or 8)) throw Bad(nameof(o.VectorDimension), o.VectorDimension, "1, 2, 4 or 8");
        if (o.WeightsPerCodebook is < 1) throw Bad(nameof(o.WeightsPerCodebook), o.WeightsPerCodebook, "at least 1");
        if (o.ColumnsPerGroup < o.VectorDimension)
            throw Bad(nameof(o.ColumnsPerGroup), o.ColumnsPerGroup, $"at least VectorDimension {o.VectorDimension} (the widest group that fits is taken)");
        if (!double.IsFinite(o.GlobalExponent)) throw Bad(nameof(o.GlobalExponent), o.GlobalExponent, "a finite number");
        if (!double.IsFinite(o.TierStep) || o.TierStep < 0) throw Bad(nameof(o.TierStep), o.TierStep, "a finite number >= 0");
        if (!double.IsFinite(o.RelativeDamping) || o.RelativeDamping < 0) throw Bad(nameof(o.RelativeDamping), o.RelativeDamping, "a finite number >= 0");
        if (o.Precision is not (CodebookPrecision.Int8 or CodebookPrecision.Float16))
            throw Bad(nameof(o.Precision), o.Precision, "Int8 or Float16 (what the file format stores)");
    }

    public SensitivityTransformer Fit(IDataView input)
    {
        var calib = CarryingDataView.From(input, nameof(SensitivityEstimator), needPlan: false).Calibration;
        try
        {
            return new SensitivityTransformer(calib, PlanBuilder.Build(calib, _options));
        }
        catch
        {
            calib.ReleaseIfOwnedByChain();   // the chain's fit ends here: nobody else can use its statistics
            throw;
        }
    }
}

/// <summary>Passes rows through; the view it returns carries the statistics and the plan.</summary>
public sealed class SensitivityTransformer : PassThroughTransformer
{
    internal SensitivityTransformer(CalibrationResult calibration, BitAllocationPlan plan)
    {
        Calibration = calibration;
        Plan = plan;
    }

    public CalibrationResult Calibration { get; }
    public BitAllocationPlan Plan { get; }

    public override IDataView Transform(IDataView input) => new CarryingDataView(input, Calibration, Plan);
}
