using System.Diagnostics;
using Msavq.MLNet.Calibration;
using Msavq.MLNet.Format;
using Msavq.MLNet.Quantization;
using Msavq.MLNet.Sensitivity;
using static TorchSharp.torch;

namespace Msavq.MLNet;

/// <summary>The result of quantizing one layer: the stored form, the weight the network now uses, and the report.</summary>
public sealed record LayerResult(QuantizedLayer Stored, Tensor Weight, QuantizedLayerReport Report) : IDisposable
{
    public void Dispose() => Weight.Dispose();
}

/// <summary>
/// The one method dispatcher: quantizes a layer as its <see cref="LayerPlan"/> says. The chain, the CLI
/// (<c>msavq quantize-layer</c>) and the benchmarks all come through here, so "msavq" means one algorithm everywhere
/// and every method sees the same W and statistics; only the method-specific step differs (architecture.md §1).
/// </summary>
public static class LayerQuantizer
{
    /// <summary>
    /// Plans and quantizes one layer on its own: the plan comes from the same <see cref="SensitivityEstimator"/> logic
    /// the chain uses (a budget over this layer alone), the quantization from <see cref="Quantize"/>.
    /// </summary>
    public static LayerResult QuantizeOne(string name, Tensor weight, ModalityStatistics statistics,
        SensitivityEstimator.Options plan, MixedPrecisionVqEstimator.Options options)
    {
        var whole = PlanBuilder.Build(new[] { new PlanInput(name, weight, statistics, VisionWeight: 1) }, plan);
        return Quantize(weight, statistics, whole.Layers[0], whole.Precision, options);
    }

    /// <summary>Quantizes <paramref name="weight"/> with the statistics at hand as <paramref name="plan"/> says.</summary>
    public static LayerResult Quantize(Tensor weight, ModalityStatistics stats, LayerPlan plan, CodebookPrecision precision,
                                       MixedPrecisionVqEstimator.Options o)
    {
        var clock = Stopwatch.StartNew();
        using var scope = NewDisposeScope();
        var w = weight.detach().to(ScalarType.Float32).clone();
        if (!w.isfinite().all().item<bool>()) throw new ArgumentException($"Layer '{plan.Layer}' has non-finite weights.");
        var plain = stats.Combine(1.0);
        var kmeans = new KMeansOptions { Iterations = o.KMeansIterations, Seed = o.Seed, FusedAssignment = o.FusedKMeans, MaxPointsPerCodebook = o.KMeansMaxPoints };
        QuantizedLayer stored;
        switch (plan.Method)
        {
            case QuantizationMethod.Rtn:
            {
                using var q = RoundToNearest.Quantize(w, plan.Bits, plan.GroupSize);
                stored = QuantizedLayerBuilder.FromScalar(plan.Layer, q);
                break;
            }
            case QuantizationMethod.Gptq or QuantizationMethod.GptqMixed:
            {
                using var q = Gptq.Quantize(w, plain.A, new GptqOptions
                {
                    Bits = plan.Bits, GroupSize = plan.GroupSize, ActOrder = o.GptqActOrder, StaticGroups = o.GptqActOrder,
                    PercentDamping = o.RelativeDamping,
                });
                stored = QuantizedLayerBuilder.FromScalar(plan.Layer, q);
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
                    PercentDamping = o.RelativeDamping, KMeans = kmeans, Precision = precision,
                    RefineCodebooks = o.RefineCodebooks,
                });
                stored = QuantizedLayerBuilder.FromVector(plan.Layer, q, null, null);
                break;
            }
            case QuantizationMethod.Msavq:
            {
                using var q = MsavqLayer.Quantize(w, stats.Combine(plan.VisionWeight),
                    new MsavqLayerPlan(plan.Layout!, plan.TileCodebookSizes!, plan.ColumnOrder, plan.RowScales,
                        TrialBits: Math.Max(2, (int)Math.Round(plan.Cost.IndexBitsPerWeight)), plan.Curvature, plan.OutputFactorFloor),
                    new MsavqLayerOptions
                    {
                        GradientShift = o.GradientShift, Beta = o.Beta, ShiftTrustRatio = o.ShiftTrustRatio,
                        RelativeDamping = o.RelativeDamping, KMeans = kmeans, Precision = precision, RefineCodebooks = o.RefineCodebooks,
                        Forward = o.SweepForward,
                    });
                stored = QuantizedLayerBuilder.FromVector(plan.Layer, q.Weight, q.ColumnOrder, q.RowScales);
                break;
            }
            default:
                throw new ArgumentOutOfRangeException(nameof(plan), $"Unknown method {plan.Method}.");
        }
        // The stored form is the truth: the network runs with exactly what a saved file gives back, and its bits are
        // the accounted bits (one source: BitCost); the plan must have predicted them.
        var cost = stored.Cost();
        if (Math.Abs(plan.Cost.TotalBits - cost.TotalBits) > 1e-6 * cost.TotalBits)
            throw new InvalidOperationException($"Layer '{plan.Layer}': planned {plan.Cost.TotalBits} bits but stored {cost.TotalBits}.");
        var wHat = StoredWeights.Weight(stored, w.device);
        if (!wHat.isfinite().all().item<bool>())
            throw new InvalidOperationException($"Quantizing layer '{plan.Layer}' produced non-finite weights (non-finite statistics?).");
        double proxy = HessianFactor.RelativeProxyError(w, wHat, plain.A);
        var report = new QuantizedLayerReport(plan.Layer, plan.Rows, plan.Columns, plan.Method.ToString(),
            cost.IndexBitsPerWeight, cost.OverheadBitsPerWeight,
            stored.Kind == QuantizedKind.Scalar ? stored.Groups : stored.CodebookSizes.Length, proxy, clock.Elapsed.TotalSeconds);
        return new LayerResult(stored, wHat.to(weight.dtype).MoveToOuterDisposeScope(), report);
    }
}
