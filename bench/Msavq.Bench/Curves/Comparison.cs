namespace Msavq.Bench.Curves;

/// <summary>MSAVQ against one baseline at MSAVQ's realized bits, on one metric, with paired bootstrap intervals.</summary>
/// <param name="How">"equal bits" (a baseline run within 0.01 b/w) or "interpolated a–b" (between two baseline points).</param>
public sealed record Comparison(string Metric, double Budget, double Bits, string Baseline, string How, double Ours, double Theirs,
                                double Difference, double DifferenceLow, double DifferenceHigh, double Reduction, double ReductionLow,
                                double ReductionHigh)
{
    /// <summary>Ours is better and the interval of the difference excludes 0.</summary>
    public bool Better(bool lowerIsBetter) => lowerIsBetter ? DifferenceHigh < 0 : DifferenceLow > 0;

    public bool Worse(bool lowerIsBetter) => lowerIsBetter ? DifferenceLow > 0 : DifferenceHigh < 0;

    public const double EqualBitsTolerance = 0.01;

    /// <summary>
    /// Each of our points against every other method's curve: per item, the baseline's value at our bits — its run
    /// when one lies within <see cref="EqualBitsTolerance"/>, else linear interpolation between its two neighbouring
    /// points (none outside its range) — then the paired difference ours − theirs and the relative reduction
    /// 1 − ours/theirs, with 95 % bootstrap intervals over items.
    /// </summary>
    public static List<Comparison> All(IReadOnlyList<CurvePoint> ours, IReadOnlyList<CurvePoint> points, CurveMetric metric)
    {
        var result = new List<Comparison>();
        foreach (var p in ours)
        {
            var mine = p.Items(metric.Name);
            var keep = Enumerable.Range(0, mine.Length).Where(i => !double.IsNaN(mine[i])).ToArray();
            foreach (var baseline in points.Where(x => x.Config.Name != p.Config.Name).GroupBy(x => x.Config.Name))
            {
                var curve = baseline.OrderBy(x => x.Bits).ToList();
                var (theirs, how) = At(curve, p.Bits, metric.Name);
                if (theirs is null) continue;
                double[] a = keep.Select(i => mine[i]).ToArray(), b = keep.Select(i => theirs[i]).ToArray();
                var (dl, dh) = Bootstrap.Difference(a, b);
                var (rl, rh) = Bootstrap.Reduction(a, b);
                double ma = a.Average(), mb = b.Average();
                result.Add(new Comparison(metric.Name, p.Budget, p.Bits, baseline.Key, how, ma, mb, ma - mb, dl, dh,
                    mb == 0 ? 0 : 1 - ma / mb, rl, rh));
            }
        }
        return result;
    }

    private static (double[]? Items, string How) At(List<CurvePoint> curve, double bits, string metric)
    {
        var near = curve.OrderBy(x => Math.Abs(x.Bits - bits)).First();
        if (Math.Abs(near.Bits - bits) <= EqualBitsTolerance) return (near.Items(metric), $"equal bits ({near.Bits:F3})");
        var below = curve.LastOrDefault(x => x.Bits < bits);
        var above = curve.FirstOrDefault(x => x.Bits > bits);
        if (below is null || above is null) return (null, "");
        double t = (bits - below.Bits) / (above.Bits - below.Bits);
        var lo = below.Items(metric);
        var hi = above.Items(metric);
        return (lo.Select((v, i) => v + t * (hi[i] - v)).ToArray(), $"interpolated {below.Bits:F3}–{above.Bits:F3}");
    }
}
