using System.Diagnostics;
using Msavq.MLNet.Calibration;
using Msavq.MLNet.Quantization;
using Msavq.MLNet.Sensitivity;
using static TorchSharp.torch;

namespace Msavq.MLNet;

/// <summary>The result of quantizing one layer: the dequantized weight (what the network now uses) and its report.</summary>
internal sealed record LayerResult(Tensor Weight, QuantizedLayerReport Report, Format.QuantizedLayer Stored);

/// <summary>
/// Quantizes one layer as its <see cref="LayerPlan"/> says, on the statistics at hand. Every method sees the same
/// W and the same statistics; only the method-specific step differs (architecture.md §1).
/// </summary>
internal static class LayerQuantizer
{
    public static LayerResult Quantize(Tensor weight, ModalityStatistics stats, LayerPlan plan, BitAllocationPlan whole,
                                       MixedPrecisionVqEstimator.Options o)
    {
        var clock = Stopwatch.StartNew();
        using var scope = NewDisposeScope();
        var w = weight.detach().to(ScalarType.Float32).clone();
        if (!w.isfinite().all().item<bool>()) throw new ArgumentException($"Layer '{plan.Layer}' has non-finite weights.");
        var plain = stats.Combine(1.0);
        var kmeans = new KMeansOptions { Iterations = o.KMeansIterations, Seed = o.Seed };
        Format.QuantizedLayer stored;
        BitCost cost;
        int codebooks;
        switch (plan.Method)
        {
            case QuantizationMethod.Rtn:
            {
                using var q = RoundToNearest.Quantize(w, plan.Bits, plan.GroupSize);
                (stored, cost, codebooks) = (QuantizedLayerBuilder.FromScalar(plan.Layer, q), q.Cost(), (int)q.Scales.shape[1]);
                break;
            }
            case QuantizationMethod.Gptq:
            {
                using var q = Gptq.Quantize(w, plain.A, new GptqOptions
                {
                    Bits = plan.Bits, GroupSize = plan.GroupSize, ActOrder = true, StaticGroups = true,
                    PercentDamping = o.RelativeDamping,
                });
                (stored, cost, codebooks) = (QuantizedLayerBuilder.FromScalar(plan.Layer, q), q.Cost(), (int)q.Scales.shape[1]);
                break;
            }
            case QuantizationMethod.Gptvq:
            {
                var layout = plan.Layout!;
                using var q = Gptvq.Quantize(w, plain.A, new GptvqOptions
                {
                    VectorDim = layout.VectorDim, IndexBitsPerWeight = Math.Log2(plan.TileCodebookSizes![0]) / layout.VectorDim,
                    ColumnsPerGroup = layout.ColumnsPerGroup,
                    WeightsPerCodebook = (long)layout.RowsPerGroup * layout.ColumnsPerGroup,
                    PercentDamping = o.RelativeDamping, KMeans = kmeans, Precision = whole.Precision,
                    RefineCodebooks = o.RefineCodebooks,
                });
                (stored, cost, codebooks) = (QuantizedLayerBuilder.FromVector(plan.Layer, q, null, null), q.Cost(), q.Codebooks.Length);
                break;
            }
            default:
                (stored, cost, codebooks) = Msavq(w, stats, plan, whole, o, kmeans);
                break;
        }
        // The stored form is the truth: the network runs with exactly what a saved file will give back.
        var wHat = QuantizedLayerBuilder.Weight(stored, w.device);
        if (Math.Abs(stored.StoredBits() - cost.TotalBits) > 1e-6 * cost.TotalBits)
            throw new InvalidOperationException($"Layer '{plan.Layer}': stored {stored.StoredBits()} bits but accounted {cost.TotalBits}.");
        if (!wHat.isfinite().all().item<bool>())
            throw new InvalidOperationException($"Quantizing layer '{plan.Layer}' produced non-finite weights (non-finite statistics?).");
        double proxy = HessianFactor.RelativeProxyError(w, wHat, plain.A);
        var report = new QuantizedLayerReport(plan.Layer, plan.Rows, plan.Columns, plan.Method.ToString(),
            cost.IndexBitsPerWeight, cost.OverheadBitsPerWeight, codebooks, proxy, clock.Elapsed.TotalSeconds);
        return new LayerResult(wHat.to(weight.dtype).MoveToOuterDisposeScope(), report, stored);
    }

    /// <summary>algorithm.md §8.4: modality-weighted statistics, Newton shift, Block-LDL VQ with the planned codebooks.</summary>
    private static (Format.QuantizedLayer, BitCost, int) Msavq(Tensor w, ModalityStatistics stats, LayerPlan plan, BitAllocationPlan whole,
                                                MixedPrecisionVqEstimator.Options o, KMeansOptions kmeans)
    {
        var c = stats.Combine(plan.VisionWeight);
        Tensor a = c.A, g = c.G, ca = c.CurvatureA, wp = w;
        Tensor? idx = null;
        if (plan.ColumnOrder is { } order)
        {
            idx = tensor(order, device: w.device);
            wp = w.index_select(1, idx);
            a = a.index_select(0, idx).index_select(1, idx);
            g = g.index_select(1, idx);
            ca = ca.index_select(0, idx).index_select(1, idx);
        }
        var b = c.B.clamp_min(1e-3 * Math.Max(c.B.mean().item<double>(), double.Epsilon));   // §8.2 floor
        bool hasGradient = g.abs().max().item<double>() > 0 && ca.diagonal().max().item<double>() > 0;
        // Newton shift on the weighted K-FAC curvature (CurvatureA ⊗ diag CurvatureB), §8.4 step 1.
        var target = wp;
        if (o.GradientShift && hasGradient && o.Beta > 0)
        {
            var step = wp - GradientShift.OneSided(wp, g, ca, c.CurvatureB, new GradientShiftOptions { Beta = 1, InputDamping = o.RelativeDamping });
            // Trust region: the calibration gradient of a trained model is mostly noise, and the Kronecker curvature
            // is rough, so the step may not move W further (in the A-metric) than a fraction of the quantization error.
            int trialBits = Math.Max(2, (int)Math.Round(plan.Cost.IndexBitsPerWeight));
            using var trial = RoundToNearest.Quantize(wp, trialBits, 64);
            double scale = GradientShift.TrustScale(step, trial.Dequantize() - wp, a, o.Beta, o.ShiftTrustRatio);
            target = wp - step * scale;
        }
        Tensor? rowScale = null;
        if (plan.RowScales)
        {
            // Rows normalized to unit RMS (fp16 scales, as stored); b·s² keeps the objective tr(E A Eᵀ diag b) unchanged.
            rowScale = target.pow(2).mean(new long[] { 1 }).sqrt().clamp_min(1e-8).to(ScalarType.Float16).to(target.dtype);
            target = target / rowScale.unsqueeze(1);
            b = b * rowScale.to(ScalarType.Float64).pow(2);
        }
        using var q = BlockLdlq.Quantize(target, a, b, new BlockLdlqOptions
        {
            Layout = plan.Layout, TileCodebookSizes = plan.TileCodebookSizes, RelativeDamping = o.RelativeDamping,
            KMeans = kmeans, Precision = whole.Precision, RefineCodebooks = o.RefineCodebooks,
        });
        var cost = q.Cost();
        if (plan.ColumnOrder is not null) cost = cost with { PermutationBits = BitCost.PermutationCost(plan.Columns) };
        if (rowScale is not null) cost = cost with { ScaleBits = 16.0 * plan.Rows };
        return (QuantizedLayerBuilder.FromVector(plan.Layer, q, plan.ColumnOrder, rowScale), cost, q.Codebooks.Length);
    }
}
