using Msavq.MLNet.Calibration;
using Msavq.MLNet.Format;
using TorchSharp;
using static TorchSharp.torch;

namespace Msavq.MLNet.Quantization;

/// <summary>What the bit allocation decided for one layer (algorithm.md §8.3), as the MSAVQ layer step needs it.</summary>
/// <param name="Layout">Tiles: d-vectors along the input dimension, one codebook per tile.</param>
/// <param name="TileCodebookSizes">K per tile, row-major.</param>
/// <param name="ColumnOrder">Input-column order the sweep works in (modality-affinity bins), or null.</param>
/// <param name="RowScales">One fp16 scale per output row.</param>
/// <param name="TrialBits">Bits of the RTN trial that sizes the shift's trust region.</param>
/// <param name="Curvature">The second-order model (A, b) the shift and the sweep share.</param>
/// <param name="OutputFactorFloor">ε of b's floor, b ← max(b, ε·mean(b)) (§8.2).</param>
public sealed record MsavqLayerPlan(VqLayout Layout, int[] TileCodebookSizes, long[]? ColumnOrder, bool RowScales, int TrialBits,
                                    Curvature Curvature = Curvature.Activation, double OutputFactorFloor = Defaults.OutputFactorFloor);

/// <summary>Options of <see cref="MsavqLayer"/>.</summary>
public sealed record MsavqLayerOptions
{
    /// <summary>Quantize the Newton-shifted target W* (§8.4 step 1) instead of W.</summary>
    public bool GradientShift { get; init; }
    /// <summary>β: the step's trust factor.</summary>
    public double Beta { get; init; } = 0.3;
    /// <summary>τ: the shift's A-norm is at most τ times a trial RTN error's; 0 = no trust region (the step is β times Newton's).</summary>
    public double ShiftTrustRatio { get; init; } = 0.05;
    /// <summary>λ relative to mean(diag A).</summary>
    public double RelativeDamping { get; init; } = 0.01;
    public KMeansOptions KMeans { get; init; } = new();
    public CodebookPrecision Precision { get; init; } = CodebookPrecision.Int8;
    public bool RefineCodebooks { get; init; } = true;
    /// <summary>Sweep first to last (<see cref="BlockLdlqOptions.Forward"/>).</summary>
    public bool Forward { get; init; }
}

/// <summary>The MSAVQ layer step's result: the vector-quantized weight in the plan's column order, and its row scales.</summary>
public sealed record MsavqLayerResult(VectorQuantizedWeight Weight, Tensor? RowScales, long[]? ColumnOrder) : IDisposable
{
    public void Dispose() { Weight.Dispose(); RowScales?.Dispose(); }
}

/// <summary>
/// One layer of MSAVQ, top-down (algorithm.md §8.4), on statistics already weighted by modality (§8.2, r_ℓ of
/// §7.5) and with the codebook sizes the allocation chose (§8.3):
/// <list type="number">
/// <item>put W, A and G in the plan's column order (modality-affinity bins, §8.3 "structure");</item>
/// <item>optionally shift the target: W* = W − s·diag(b)⁻¹·G·A⁻¹ with s = β (or min(β, trust)) on the sweep's own
///   (A, b), so the shift and the sweep minimize one loss model (§8.4 step 1, §6.1, §6.7);</item>
/// <item>optionally normalize rows (fp16 scales), folding s_i² into b so the objective is unchanged;</item>
/// <item>Block-LDL of A, reverse sweep with D_k-weighted codeword choice, codebooks fitted by weighted k-means
///   when the sweep enters their tile, closed-form refinement (§8.4 steps 2–9, <see cref="BlockLdlq"/>).</item>
/// </list>
/// </summary>
public static class MsavqLayer
{
    public static MsavqLayerResult Quantize(Tensor w, CombinedStatistics stats, MsavqLayerPlan plan, MsavqLayerOptions o)
    {
        using var scope = NewDisposeScope();
        // One second-order model, tr(ΔW A ΔWᵀ diag b), for the shift and the sweep alike: then quantizing the shifted
        // target by the sweep is sequential OBS on ⟨G,ΔW⟩ + ½tr(ΔW A ΔWᵀ diag b) (§6.1's identity, exact for β = 1).
        var (aRaw, bRaw) = stats.Factors(plan.Curvature);
        // 1. Column order (§8.3): every statistic follows the weight's columns.
        Tensor wp = w, a = aRaw, g = stats.G;
        if (plan.ColumnOrder is { } order)
        {
            var idx = tensor(order, device: w.device);
            wp = w.index_select(1, idx);
            a = a.index_select(0, idx).index_select(1, idx);
            g = g.index_select(1, idx);
        }
        var b = HessianFactor.FloorOutputFactor(bRaw, plan.OutputFactorFloor);       // §8.2 floor

        // 2. Newton shift W* = W − s·diag(b)⁻¹·G·A_λ⁻¹ on the same (A, b), §8.4 step 1, §6.7.
        var target = wp;
        bool hasGradient = g.abs().max().item<double>() > 0 && a.diagonal().max().item<double>() > 0;
        if (o.GradientShift && hasGradient && o.Beta > 0)
        {
            var step = wp - GradientShift.OneSided(wp, g, a, b, new GradientShiftOptions { Beta = 1, InputDamping = o.RelativeDamping });
            double s = o.Beta;
            if (o.ShiftTrustRatio > 0)
            {
                // Trust region: a calibration gradient is noisy and a Kronecker curvature rough, so the step may not move W
                // further (in the A-metric) than a fraction of a quantization error.
                using var trial = RoundToNearest.Quantize(wp, plan.TrialBits, 64);
                s = GradientShift.TrustScale(step, trial.Dequantize() - wp, a, o.Beta, o.ShiftTrustRatio);
            }
            using var scale = s.ToScalar();   // explicit Scalars (WeightedKMeans says why)
            target = wp - step.mul(scale);
        }

        // 3. Row scales: rows at unit RMS share codebooks better; b·s² keeps tr(E A Eᵀ diag b) unchanged.
        Tensor? rowScale = null;
        if (plan.RowScales)
        {
            using var two = 2.ToScalar();
            using var floor = 1e-8.ToScalar();
            rowScale = target.pow(two).mean(new long[] { 1 }).sqrt().clamp_min(floor).to(ScalarType.Float16).to(target.dtype);
            target = target / rowScale.unsqueeze(1);
            b = b * rowScale.to(ScalarType.Float64).pow(two);
        }

        // 4. Block-LDL vector quantization with the planned codebooks (§8.4 steps 2–9).
        var q = BlockLdlq.Quantize(target, a, b, new BlockLdlqOptions
        {
            Layout = plan.Layout, TileCodebookSizes = plan.TileCodebookSizes, RelativeDamping = o.RelativeDamping,
            KMeans = o.KMeans, Precision = o.Precision, RefineCodebooks = o.RefineCodebooks, Forward = o.Forward,
        });
        q.Indices.MoveToOuterDisposeScope();
        foreach (var c in q.Codebooks) c.MoveToOuterDisposeScope();
        return new MsavqLayerResult(q, rowScale?.MoveToOuterDisposeScope(), plan.ColumnOrder);
    }
}
