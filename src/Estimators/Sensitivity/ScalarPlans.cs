using Msavq.MLNet.Format;
using Msavq.MLNet.Quantization;
using static TorchSharp.torch;

namespace Msavq.MLNet.Sensitivity;

/// <summary>Plans for the scalar methods (RTN, GPTQ): one grid per (row, group).</summary>
internal static class ScalarPlans
{
    private static readonly int[] Bits = { 2, 3, 4, 8 };
    private static readonly int[] Groups = { 32, 64, 128, 256, -1 };

    /// <summary>The one configuration for every layer: the most bits, then the smallest groups, that fit (RTN, GPTQ as published).</summary>
    public static List<LayerPlan> Uniform(List<(string Name, int M, int N)> shapes, double budget, double weights, SensitivityEstimator.Options o)
    {
        double cheapest = double.MaxValue;
        foreach (int bits in Bits.Reverse())
            foreach (int g in Groups)
            {
                var plans = shapes.Select(s => Plan(s, o.Method, bits, g)).ToList();
                double total = plans.Sum(p => p.Cost.TotalBits);
                cheapest = Math.Min(cheapest, total);
                if (total <= budget * (1 + 1e-12)) return plans;
            }
        throw PlanBuilder.Impossible(o, cheapest / weights, "2-bit codes with one scale and zero per row");
    }

    /// <summary>
    /// GPTQ + allocator: each layer gets its own bit width (2, 3 or 4) and group size from the allocator MSAVQ uses
    /// (<see cref="BitAllocator"/>), with every option's distortion measured as tr(E A Eᵀ diag b) of its RTN trial
    /// (algorithm.md §7.2, §7.4) — the mixed-precision scalar baseline a user would build, meeting any budget the
    /// grid reaches to within a few thousandths of a bit.
    /// </summary>
    public static List<LayerPlan> Allocated(IReadOnlyList<PlanInput> inputs, List<(string Name, int M, int N)> shapes, double budget,
                                            double weights, SensitivityEstimator.Options o)
    {
        var options = new List<(int Bits, int Group)[]>();
        var items = new List<AllocationItem>();
        for (int l = 0; l < shapes.Count; l++)
        {
            using var scope = NewDisposeScope();
            var s = shapes[l];
            var c = inputs[l].Statistics.Combine(1.0);
            var w = inputs[l].Weight.detach().to(ScalarType.Float64);
            var b = HessianFactor.FloorOutputFactor(c.B, o.OutputFactorFloor);
            var candidates = Bits.Where(x => x <= 4).SelectMany(bits => Groups.Select(g => (Bits: bits, Group: g)))
                .Select(x => (x.Bits, x.Group, Cost: Plan(s, o.Method, x.Bits, x.Group).Cost.TotalBits))
                .OrderBy(x => x.Cost).ThenBy(x => x.Bits).ToArray();
            var distortion = candidates.Select(x =>
            {
                using var q = RoundToNearest.Quantize(w, x.Bits, x.Group);
                var e = q.Dequantize() - w;
                return ((e * b.unsqueeze(1)).matmul(c.A) * e).sum().item<double>();
            }).ToArray();
            options.Add(candidates.Select(x => (x.Bits, x.Group)).ToArray());
            items.Add(new AllocationItem(0, candidates.Select(x => (double)x.Bits).ToArray(), candidates.Select(x => x.Cost).ToArray())
            {
                TierDistortion = distortion,
            });
        }
        int[] chosen;
        try { chosen = BitAllocator.Allocate(items, budget); }
        catch (ArgumentException)
        {
            throw PlanBuilder.Impossible(o, items.Sum(i => i.TierCostBits[0]) / weights, "2-bit codes with one scale and zero per row");
        }
        return shapes.Select((s, l) => Plan(s, o.Method, options[l][chosen[l]].Bits, options[l][chosen[l]].Group)).ToList();
    }

    private static LayerPlan Plan((string Name, int M, int N) s, QuantizationMethod method, int bits, int group)
    {
        int g = group <= 0 || group >= s.N ? -1 : group;
        return new LayerPlan
        {
            Layer = s.Name, Rows = s.M, Columns = s.N, Method = method, Bits = bits, GroupSize = g,
            Cost = BitCost.Scalar(s.M, s.N, bits, g <= 0 ? 1 : (s.N + g - 1) / g, groupMap: false),
        };
    }
}
