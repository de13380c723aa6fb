using Msavq.MLNet.Models;
using Msavq.MLNet.Quantization;

namespace Msavq.MLNet;

/// <summary>The documented defaults of every option of the MSAVQ estimators, in one place (algorithm.md §8.5).</summary>
public static class Defaults
{
    public const string ImageColumn = "Image";
    public const string TextColumn = "Question";
    public const string AnswerColumn = "Answer";
    /// <summary>Calibration rows per forward/backward pass.</summary>
    public const int CalibrationBatchSize = 32;
    /// <summary>Statistics re-collected block by block on the partly quantized network (GPTQ style).</summary>
    public const CalibrationMode Mode = CalibrationMode.Sequential;
    /// <summary>The language model's linears (algorithm.md §8.1); vision tower and projector stay full precision.</summary>
    public static readonly LayerRole[] Roles = { LayerRole.Language };

    /// <summary>
    /// The layers <see cref="Roles"/> selects: the language model's, or every layer of a model that has no language
    /// part (an image featurizer), which has nothing else to quantize.
    /// </summary>
    public static IReadOnlyList<QuantizableLayer> Layers(IQuantizableModel model)
    {
        var language = model.QuantizableLayers.Where(l => Roles.Contains(l.Role)).ToList();
        return language.Count > 0 ? language : model.QuantizableLayers;
    }

    /// <summary>All-in average bits per weight over the quantized layers.</summary>
    public const double TargetBitsPerWeight = 2.25;
    public const QuantizationMethod Method = QuantizationMethod.Msavq;
    /// <summary>d: weights per vector along the input dimension; d = 2 suits layers of a few hundred columns (architecture.md §9).</summary>
    public const int VectorDimension = 2;
    /// <summary>Weights sharing one codebook at d = 2 (GPTVQ's groupsize for d = 2).</summary>
    public const long WeightsPerCodebook = 2048;

    /// <summary>
    /// Weights sharing one codebook at vector dimension <paramref name="d"/>: 64·d·4^d (256 at d = 1, 2,048 at d = 2,
    /// 65,536 at d = 4, GPTVQ's groupsizes), so that a codebook of 2 index bits per weight (K = 4^d, int8 entries) costs
    /// 1/8 bit per weight at every d. A fixed share would not: at d = 4 a 2,048-weight tile's K = 256 codebook alone
    /// costs 4 bits per weight, and the allocation, to meet a 2.25-bit budget, would give most tiles K ≤ 32.
    /// </summary>
    public static long WeightsPerCodebookFor(int d) => d is >= 1 and <= 10 ? 64L * d << (2 * d) : throw new ArgumentOutOfRangeException(nameof(d), d, "d must be 1 to 10.");
    /// <summary>
    /// Input columns per codebook tile, for GPTVQ and MSAVQ alike. With modality weighting, MSAVQ sorts columns by
    /// affinity a_j = V_jj / (V_jj + T_jj) first, so each column group is an affinity bin (§8.3).
    /// </summary>
    public const int ColumnsPerGroup = 32;
    /// <summary>MSAVQ normalizes each output row by an fp16 scale before VQ (16 bits per row, counted in the budget).</summary>
    public const bool RowScales = false;
    /// <summary>γ: exponent of the global (layer) salience in the combined score (§8.3).</summary>
    public const double GlobalExponent = 1.0;
    public const Curvature CurvatureModel = Curvature.Activation;
    /// <summary>ε of the output factor's floor b ← max(b, ε·mean(b)) (algorithm.md §8.2).</summary>
    public const double OutputFactorFloor = 1e-3;
    public const ColumnGrouping Grouping = ColumnGrouping.Affinity;
    public const LocalSalience Local = LocalSalience.Obs;
    /// <summary>Tier step in index bits per weight (tiers b̄ − step, b̄, b̄ + step).</summary>
    public const double TierStep = 0.5;

    /// <summary>
    /// Whether MSAVQ quantizes the gradient-shifted W* (§8.4 step 1), on the sweep's own (A, b). Off by default: with
    /// one loss model for shift and sweep the K-FAC Newton step is mis-scaled by orders of magnitude (without a trust
    /// region even β = 0.001 destroyed ShapesVlm on validation), and with the trust region it made both KLs worse in
    /// the test ablation (bench/RESULTS.md "Ablation").
    /// </summary>
    public const bool GradientShift = false;
    /// <summary>β of the Newton shift W* = W − β·diag(b)⁻¹·G·A⁻¹ (§8.4 step 1).</summary>
    public const double Beta = 0.3;
    /// <summary>τ: the shift's A-norm is at most τ times that of a trial RTN error (a trust region; see MsavqLayer); 0 = none.</summary>
    public const double ShiftTrustRatio = 0.05;
    /// <summary>λ relative to mean(diag A) (§8.2).</summary>
    public const double RelativeDamping = 0.01;
    public const CodebookPrecision Precision = CodebookPrecision.Int8;
    /// <summary>MSAVQ's sweep direction over the ordered columns (false: LDLQ's last-to-first).</summary>
    public const bool SweepForward = false;
    /// <summary>
    /// Codebook fine-tuning steps after quantization (0 = off). 300 steps at 3·10⁻⁵ won the validation tuning on
    /// ShapesVlm (bench/RESULTS.md "Tuning"): the whole-sequence KL to FP fell from 1.3·10⁻² to 4.0·10⁻³.
    /// </summary>
    public const int FineTuneSteps = 300;
    public const double FineTuneLearningRate = 3e-5;
    public const int FineTuneBatchSize = 16;
    public const int KMeansIterations = 100;
    public const int Seed = 0;
}

/// <summary>Which second-order model of the loss MSAVQ's allocation, shift and sweep share (one model for all three, §6.1).</summary>
public enum Curvature
{
    /// <summary>A = E[x xᵀ] (modality-weighted) with the output factor b = E[δ²]: the layer-output proxy of GPTQ, weighted by b.</summary>
    Activation,
    /// <summary>
    /// The K-FAC Fisher of the loss: A_F = E[‖δ‖² x xᵀ] / E[‖δ‖²] with b_F = E[δ²] — inputs weighed by how much loss
    /// curvature their token carries, so the tokens the objective depends on dominate (§6.6 sketch A, one step).
    /// </summary>
    Fisher,
}

/// <summary>How input columns are ordered before they are cut into codebook tiles (§8.3 "structure").</summary>
public enum ColumnGrouping
{
    /// <summary>Natural order: contiguous tiles.</summary>
    Contiguous,
    /// <summary>Sorted by modality affinity a_j = V_jj/(V_jj+T_jj): each tile an affinity bin (needs both modalities).</summary>
    Affinity,
    /// <summary>Sorted by local salience (RSAVQ's sensitivity-sorted channel groups): salient columns share tiles, and bits.</summary>
    Salience,
}

/// <summary>The local (channel) sensitivity of §8.3.</summary>
public enum LocalSalience
{
    /// <summary>OBS: Σ_i b_i W_ij² / [A_λ⁻¹]_jj.</summary>
    Obs,
    /// <summary>RSAVQ's gradient form ½ gᵀ F⁻¹ g with the diagonal Kronecker Fisher F_ij = b_i A_jj: Σ_i G_ij² / (b_i A_jj).</summary>
    Gradient,
}

/// <summary>How layer statistics are gathered (architecture.md §2).</summary>
public enum CalibrationMode
{
    /// <summary>Each block's statistics come from the network with all earlier blocks already quantized.</summary>
    Sequential,
    /// <summary>Every layer uses full-precision statistics.</summary>
    OneShot,
}

/// <summary>The preset that decides what the chain does per layer; baselines and MSAVQ share every other step.</summary>
public enum QuantizationMethod
{
    /// <summary>Round-to-nearest, min–max per group.</summary>
    Rtn,
    /// <summary>GPTQ (act-order, static groups), one bit width and group size for every layer.</summary>
    Gptq,
    /// <summary>GPTQ + allocator: each layer's bit width (2–4) and group size chosen by the allocator MSAVQ uses.</summary>
    GptqMixed,
    /// <summary>GPTVQ: uniform codebooks, diagonal intra-vector feedback.</summary>
    Gptvq,
    /// <summary>Mixed-precision, modality-aware, gradient-aware Block-LDL VQ (algorithm.md §8).</summary>
    Msavq,
}
