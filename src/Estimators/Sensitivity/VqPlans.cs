using Msavq.MLNet.Quantization;
using static TorchSharp.torch;

namespace Msavq.MLNet.Sensitivity;

/// <summary>Plans for GPTVQ: one codebook size for the whole model, tile sizes chosen per layer to use the budget.</summary>
internal static class VqPlans
{
    /// <summary>Weights per codebook a layer's tiles may have (GPTVQ's groupsize S), finest first.</summary>
    private static readonly long[] Shares = { 256, 512, 1024, 1536, 2048, 3072, 4096, 6144, 8192, 12288, 16384, 32768, 65536, 131072, 262144 };

    /// <summary>
    /// GPTVQ: the largest codebook size K = 2^(b·d) whose coarsest tiling fits; then, layer by layer, finer tiles (more
    /// codebooks) while the budget lasts — most salient layers first (global salience, algorithm.md §7.2) — so GPTVQ
    /// meets a requested budget as closely as its K grid allows, as in its paper's 2.125/2.25-bit settings.
    /// </summary>
    public static List<LayerPlan> Uniform(IReadOnlyList<PlanInput> inputs, List<(string Name, int M, int N)> shapes, double budget,
                                          double weights, SensitivityEstimator.Options o)
    {
        int d = o.VectorDimension;
        var layouts = shapes.Select(s => Shares
            .Select(share => VqLayout.ForGroupSize(s.M, s.N, d, PlanBuilder.ColumnsPerGroup(s.N, d, o.ColumnsPerGroup), share))
            .Distinct().OrderByDescending(l => (long)l.RowsPerGroup * l.ColumnsPerGroup).ToArray()).ToList();
        double cheapest = double.MaxValue;
        int maxBits = Math.Min((int)Math.Floor(o.TargetBitsPerWeight * d), (int)Math.Log2(PlanBuilder.MaxCodebookSize));
        for (int kBits = maxBits; kBits >= 1; kBits--)
        {
            int k = 1 << kBits;
            var costs = shapes.Select((s, l) => layouts[l].Select(lay => Cost(s, lay, k, o).TotalBits).ToArray()).ToList();
            double coarsest = costs.Sum(c => c[0]);
            cheapest = Math.Min(cheapest, coarsest);
            if (coarsest > budget * (1 + 1e-12)) continue;
            var salience = Salience(inputs, o.OutputFactorFloor);
            var items = costs.Select((c, l) => new AllocationItem(salience[l], new double[c.Length], c)
            {
                // Finer tiles fit their vectors better: a monotone model is enough to order the upgrades by salience.
                TierDistortion = layouts[l].Select(lay => salience[l] * (1 + 0.1 * Math.Log2((double)lay.RowsPerGroup * lay.ColumnsPerGroup))).ToArray(),
            }).ToList();
            var chosen = BitAllocator.Allocate(items, budget);
            return shapes.Select((s, l) =>
            {
                var lay = layouts[l][chosen[l]];
                return new LayerPlan
                {
                    Layer = s.Name, Rows = s.M, Columns = s.N, Method = o.Method, Layout = lay,
                    TileCodebookSizes = Enumerable.Repeat(k, lay.RowGroups(s.M) * lay.ColumnGroups(s.N)).ToArray(), Cost = Cost(s, lay, k, o),
                };
            }).ToList();
        }
        throw PlanBuilder.Impossible(o, cheapest / weights, $"K = 2 codebooks of d = {d}");
    }

    private static Format.BitCost Cost((string Name, int M, int N) s, VqLayout lay, int k, SensitivityEstimator.Options o) =>
        PlanBuilder.VqCost(s.M, s.N, lay, Enumerable.Repeat(k, lay.RowGroups(s.M) * lay.ColumnGroups(s.N)).ToArray(), o.Precision, permuted: false);

    /// <summary>Each layer's global salience tr(E A Eᵀ diag b) of a 2-bit RTN trial, unweighted statistics.</summary>
    private static double[] Salience(IReadOnlyList<PlanInput> inputs, double floor) => inputs.Select(input =>
    {
        using var scope = NewDisposeScope();
        var c = input.Statistics.Combine(1.0);
        return Sensitivity.Salience.Global(input.Weight.detach().to(ScalarType.Float64), c.A, HessianFactor.FloorOutputFactor(c.B, floor), 2);
    }).ToArray();
}
