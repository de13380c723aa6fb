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
        /// <summary>Weights per codebook tile for MSAVQ (GPTVQ's is searched to fit the budget).</summary>
        public long WeightsPerCodebook { get; set; } = Defaults.WeightsPerCodebook;
        /// <summary>Ablation switch: false gives every tile the same codebook size.</summary>
        public bool MixedPrecision { get; set; } = true;
        /// <summary>Ablation switch: false drops r_ℓ (image tokens weigh 1) and the modality-affinity bins.</summary>
        public bool ModalityWeighting { get; set; } = true;
        /// <summary>Input columns per codebook tile (VQ methods); with modality weighting each group is an affinity bin.</summary>
        public int ColumnsPerGroup { get; set; } = Defaults.ColumnsPerGroup;
        /// <summary>MSAVQ: one fp16 scale per output row (16 bits per row, counted in the budget).</summary>
        public bool RowScales { get; set; } = Defaults.RowScales;
        /// <summary>γ of the combined salience.</summary>
        public double GlobalExponent { get; set; } = Defaults.GlobalExponent;
        /// <summary>Distance between tiers in index bits per weight.</summary>
        public double TierStep { get; set; } = Defaults.TierStep;
        public double RelativeDamping { get; set; } = Defaults.RelativeDamping;
        public CodebookPrecision Precision { get; set; } = Defaults.Precision;
    }

    private readonly Options _options;

    public SensitivityEstimator(Options options) => _options = options ?? throw new ArgumentNullException(nameof(options));

    public SchemaShape GetOutputSchema(SchemaShape inputSchema) => inputSchema;

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
