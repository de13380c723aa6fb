using Msavq.MLNet.Calibration;
using Msavq.MLNet.Format;
using Msavq.MLNet.Quantization;
using static TorchSharp.torch;

namespace Msavq.MLNet.Sensitivity;

/// <summary>One layer as the planner sees it: its weight, its statistics by modality, and r_ℓ (1 = unweighted).</summary>
internal sealed record PlanInput(string Name, Tensor Weight, ModalityStatistics Statistics, double VisionWeight);

/// <summary>
/// Turns calibration statistics and a budget into a <see cref="BitAllocationPlan"/>. Baselines get the best uniform
/// configuration that fits the all-in budget; MSAVQ gets structured mixed precision from salience (§8.3).
/// </summary>
internal static class PlanBuilder
{
    /// <summary>Largest codebook fitted (k-means cost grows with K).</summary>
    public const int MaxCodebookSize = 4096;

    public static BitAllocationPlan Build(CalibrationResult calib, SensitivityEstimator.Options o) =>
        Build(calib.Layers.Select(l => new PlanInput(l.Name, l.Module.weight, calib.Statistics[l.Name], calib.VisionWeights[l.Name])).ToList(), o);

    public static BitAllocationPlan Build(IReadOnlyList<PlanInput> inputs, SensitivityEstimator.Options o)
    {
        if (!(o.TargetBitsPerWeight > 0) || double.IsInfinity(o.TargetBitsPerWeight))
            throw new ArgumentOutOfRangeException(nameof(o), $"TargetBitsPerWeight must be a positive number, got {o.TargetBitsPerWeight}.");
        if (o.VectorDimension is not (1 or 2 or 4 or 8))
            throw new ArgumentOutOfRangeException(nameof(o), $"VectorDimension must be 1, 2, 4 or 8, got {o.VectorDimension}.");
        if (o.Precision == CodebookPrecision.Float32)
            throw new ArgumentOutOfRangeException(nameof(o), "Codebook precision must be Int8 or Float16 (what the file format stores).");
        if (inputs.Count == 0) throw new ArgumentException("No layers to plan.", nameof(inputs));
        var shapes = inputs.Select(l => (l.Name, M: (int)l.Weight.shape[0], N: (int)l.Weight.shape[1])).ToList();
        double weights = shapes.Sum(s => (double)s.M * s.N);
        double budget = o.TargetBitsPerWeight * weights;
        var layers = o.Method switch
        {
            QuantizationMethod.Rtn or QuantizationMethod.Gptq => ScalarPlans.Uniform(shapes, budget, weights, o),
            QuantizationMethod.GptqMixed => ScalarPlans.Allocated(inputs, shapes, budget, weights, o),
            QuantizationMethod.Gptvq => VqPlans.Uniform(inputs, shapes, budget, weights, o),
            _ => MixedVq(inputs, shapes, budget, weights, o),
        };
        return new BitAllocationPlan
        {
            Method = o.Method, TargetBitsPerWeight = o.TargetBitsPerWeight, VectorDimension = o.VectorDimension,
            MixedPrecision = o.Method == QuantizationMethod.Msavq && o.MixedPrecision,
            ModalityWeighting = o.Method == QuantizationMethod.Msavq && o.ModalityWeighting,
            Precision = o.Precision, Layers = layers,
        };
    }

    private static List<LayerPlan> MixedVq(IReadOnlyList<PlanInput> inputs, List<(string Name, int M, int N)> shapes, double budget,
                                           double weights, SensitivityEstimator.Options o)
    {
        int d = o.VectorDimension;
        var layouts = shapes.Select(s =>
            VqLayout.ForGroupSize(s.M, s.N, d, ColumnsPerGroup(s.N, d, o.ColumnsPerGroup),
                o.WeightsPerCodebook ?? Defaults.WeightsPerCodebookFor(d))).ToList();
        // Affinity bins need both modalities: a text-only model would pay for a permutation that sorts nothing.
        bool bothModalities = inputs.Any(s => s.Statistics.ImageTokens > 0 && s.Statistics.TextTokens > 0);
        bool tiled = layouts.Any(l => l.ColumnsPerGroup < shapes[0].N);
        bool permute = tiled && (o.ColumnGrouping == ColumnGrouping.Salience
                                 || o.ColumnGrouping == ColumnGrouping.Affinity && o.ModalityWeighting && bothModalities);
        // Index-bit levels a codebook can have: log2(K)/d for integer log2(K).
        double step = Math.Max(o.TierStep, 1.0 / d);
        double[] Levels(double from, double to) => Enumerable.Range(1, (int)Math.Log2(MaxCodebookSize))
            .Select(kb => (double)kb / d).Where(t => t >= from - 1e-9 && t <= to + 1e-9).ToArray();
        double TileCost(int l, double t) => TileBits(shapes[l].M, shapes[l].N, layouts[l], t, o.Precision);
        double PermBits(int l) => (permute ? BitCost.ColumnMap(shapes[l].N) : 0) + (o.RowScales ? BitCost.RowScales(shapes[l].M) : 0);
        int Tiles(int l) => layouts[l].RowGroups(shapes[l].M) * layouts[l].ColumnGroups(shapes[l].N);

        // b̄: the largest uniform level that fits; tiers around it.
        var all = Levels(0, 64);
        double? baseLevel = all.Reverse().Cast<double?>().FirstOrDefault(t =>
            Enumerable.Range(0, shapes.Count).Sum(l => Tiles(l) * TileCost(l, t!.Value) + PermBits(l)) <= budget * (1 + 1e-12));
        if (baseLevel is null)
            throw Impossible(o, Enumerable.Range(0, shapes.Count).Sum(l => Tiles(l) * TileCost(l, all[0]) + PermBits(l)) / weights,
                $"K = 2 codebooks of d = {d}");
        double[] tiers = o.MixedPrecision ? Levels(baseLevel.Value - step, baseLevel.Value + step) : new[] { baseLevel.Value };

        // Salience per tile (§8.3) from the full-precision statistics.
        var local = new List<double[]>(); var global = new List<double>(); var orders = new List<long[]?>();
        var visionWeights = new List<double>();
        for (int l = 0; l < shapes.Count; l++)
        {
            using var scope = NewDisposeScope();
            var input = inputs[l];
            var stats = input.Statistics;
            double r = o.ModalityWeighting ? input.VisionWeight : 1.0;
            visionWeights.Add(r);
            var c = stats.Combine(r);
            var (a, bRaw) = c.Factors(o.Curvature);
            var b = HessianFactor.FloorOutputFactor(bRaw, o.OutputFactorFloor);
            var w = input.Weight.detach().to(ScalarType.Float64);
            var scores = Salience.Elements(w, HessianFactor.Damp(a, o.RelativeDamping), b, c.G, o.LocalSalience);
            long[]? order = !permute ? null
                : o.ColumnGrouping == ColumnGrouping.Salience ? SalienceOrder(scores.sum(dim: 0).cpu().data<double>().ToArray())
                : AffinityOrder(stats.ModalityAffinity());
            orders.Add(order);
            if (order is not null)
            {
                var idx = tensor(order, device: a.device);
                w = w.index_select(1, idx);
                a = a.index_select(0, idx).index_select(1, idx);
                scores = scores.index_select(1, idx);
            }
            local.Add(Salience.Tiles(scores, layouts[l]));
            global.Add(Salience.Global(w, a, b, (int)Math.Round(baseLevel.Value)));
        }
        var score = Salience.Combine(local, global, o.GlobalExponent);

        var items = new List<AllocationItem>();
        for (int l = 0; l < shapes.Count; l++)
            for (int t = 0; t < Tiles(l); t++)
                items.Add(new AllocationItem(score[l][t], tiers, tiers.Select(x => TileCost(l, x)).ToArray()));
        double fixedBits = Enumerable.Range(0, shapes.Count).Sum(PermBits);
        var chosen = BitAllocator.Allocate(items, budget - fixedBits);

        var plans = new List<LayerPlan>();
        int offset = 0;
        for (int l = 0; l < shapes.Count; l++)
        {
            var sizes = Enumerable.Range(0, Tiles(l)).Select(t => (int)Math.Round(Math.Pow(2, tiers[chosen[offset + t]] * d))).ToArray();
            offset += Tiles(l);
            var s = shapes[l];
            plans.Add(new LayerPlan
            {
                Layer = s.Name, Rows = s.M, Columns = s.N, Method = o.Method, Layout = layouts[l], TileCodebookSizes = sizes,
                TileSalience = score[l], ColumnOrder = orders[l], VisionWeight = visionWeights[l], RowScales = o.RowScales,
                Curvature = o.Curvature, OutputFactorFloor = o.OutputFactorFloor,
                Cost = VqCost(s.M, s.N, layouts[l], sizes, o.Precision, orders[l] is not null, o.RowScales),
            });
        }
        return plans;
    }

    /// <summary>Input columns sorted by modality affinity (stable), so contiguous column groups are affinity bins (§8.3).</summary>
    internal static long[] AffinityOrder(double[] affinity) =>
        Enumerable.Range(0, affinity.Length).OrderBy(j => affinity[j]).ThenBy(j => j).Select(j => (long)j).ToArray();

    /// <summary>Input columns by decreasing salience (stable), so contiguous column groups are sensitivity bins (RSAVQ).</summary>
    internal static long[] SalienceOrder(double[] salience) =>
        Enumerable.Range(0, salience.Length).OrderByDescending(j => salience[j]).ThenBy(j => j).Select(j => (long)j).ToArray();

    /// <summary>The widest column group ≤ <paramref name="max"/> that divides n and is a multiple of d.</summary>
    internal static int ColumnsPerGroup(int n, int d, int max)
    {
        for (int c = Math.Min(max, n) / d * d; c >= d; c -= d)
            if (n % c == 0) return c;
        throw new ArgumentException($"{n} input columns are not a multiple of the vector dimension {d}.");
    }

    /// <summary>One tile's bits at <paramref name="indexBits"/> per weight (K = 2^(indexBits·d)).</summary>
    internal static double TileBits(int m, int n, VqLayout layout, double indexBits, CodebookPrecision precision)
    {
        int k = (int)Math.Round(Math.Pow(2, indexBits * layout.VectorDim));
        return BitCost.Vector(layout.RowsPerGroup, layout.ColumnsPerGroup, layout.VectorDim,
            (long)layout.RowsPerGroup * layout.ColumnsPerGroup, new[] { k }, precision == CodebookPrecision.Int8).TotalBits;
    }

    internal static BitCost VqCost(int m, int n, VqLayout layout, int[] sizes, CodebookPrecision precision, bool permuted, bool rowScales = false) =>
        BitCost.Vector(m, n, layout.VectorDim, (long)layout.RowsPerGroup * layout.ColumnsPerGroup, sizes,
            precision == CodebookPrecision.Int8, permuted, rowScales);

    internal static ArgumentException Impossible(SensitivityEstimator.Options o, double minimum, string what) => new(
        $"No {o.Method} configuration meets {o.TargetBitsPerWeight:0.###} bits/weight all-in: the cheapest ({what}) " +
        $"costs {minimum:0.###} bits/weight.", nameof(o.TargetBitsPerWeight));
}
