namespace Msavq.Bench.Curves;

/// <summary>
/// Percentile bootstrap over evaluation items (seeded, so a rerun prints the same intervals): the mean of one metric,
/// and the paired difference or ratio of two methods' means on the same items.
/// </summary>
public static class Bootstrap
{
    public const int Resamples = 2000;

    public static (double Low, double High) Mean(double[] values, int seed = 0) => Interval(values.Length, seed, idx =>
    {
        double s = 0;
        foreach (int i in idx) s += values[i];
        return s / idx.Length;
    });

    /// <summary>Interval of mean(a) − mean(b) over the same items.</summary>
    public static (double Low, double High) Difference(double[] a, double[] b, int seed = 0) => Interval(a.Length, seed, idx =>
    {
        double s = 0;
        foreach (int i in idx) s += a[i] - b[i];
        return s / idx.Length;
    });

    /// <summary>Interval of 1 − mean(a)/mean(b) over the same items (the relative reduction of a against b).</summary>
    public static (double Low, double High) Reduction(double[] a, double[] b, int seed = 0) => Interval(a.Length, seed, idx =>
    {
        double sa = 0, sb = 0;
        foreach (int i in idx) { sa += a[i]; sb += b[i]; }
        return sb == 0 ? 0 : 1 - sa / sb;
    });

    private static (double Low, double High) Interval(int n, int seed, Func<int[], double> statistic)
    {
        if (n == 0) return (double.NaN, double.NaN);
        var rng = new Random(seed);
        var stats = new double[Resamples];
        var idx = new int[n];
        for (int r = 0; r < Resamples; r++)
        {
            for (int i = 0; i < n; i++) idx[i] = rng.Next(n);
            stats[r] = statistic(idx);
        }
        Array.Sort(stats);
        return (stats[(int)(0.025 * (Resamples - 1))], stats[(int)Math.Ceiling(0.975 * (Resamples - 1))]);
    }
}
