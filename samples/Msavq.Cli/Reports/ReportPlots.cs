using ScottPlot;

namespace Msavq.Cli.Reports;

/// <summary>The report's pictures (ScottPlot, PNG).</summary>
public static class ReportPlots
{
    private static readonly string[] MethodOrder = { "RTN", "GPTQ", "GPTVQ", "MSAVQ" };

    /// <summary>PNG written atomically (temp file + rename), so Ctrl+C never leaves half a picture.</summary>
    private static void Save(Plot plt, string path, int width, int height)
    {
        using var image = plt.GetImage(width, height);
        Msavq.MLNet.AtomicFile.Write(path, image.GetImageBytes(ImageFormat.Png, 100));
    }

    /// <summary>Methods in one fixed order, so each gets the same colour in every plot.</summary>
    private static IEnumerable<KeyValuePair<string, T>> Ordered<T>(IReadOnlyDictionary<string, T> byMethod) =>
        byMethod.OrderBy(kv => Array.IndexOf(MethodOrder, kv.Key.ToUpperInvariant()) is var i and >= 0 ? i : MethodOrder.Length)
            .ThenBy(kv => kv.Key, StringComparer.Ordinal);

    /// <summary>Index bits per weight of every channel group: layers down, input-column groups across (mean over row groups).</summary>
    public static void BitsHeatmap(string path, IReadOnlyList<string> layers, double[,] bits, string title)
    {
        var plt = new Plot();
        var hm = plt.Add.Heatmap(bits);
        hm.Colormap = new ScottPlot.Colormaps.Viridis();
        hm.FlipVertically = true;
        var bar = plt.Add.ColorBar(hm);
        bar.Label = "index bits per weight";
        plt.Title(title);
        plt.XLabel("input-column group (in the order the quantizer used)");
        plt.Axes.Left.TickGenerator = new ScottPlot.TickGenerators.NumericManual(
            Enumerable.Range(0, layers.Count).Select(i => (double)i).ToArray(), layers.ToArray());
        plt.Axes.Left.TickLabelStyle.FontSize = 9;
        Save(plt, path, 1100, 120 + 22 * layers.Count);
    }

    /// <summary>Relative proxy error per layer (log scale) for each method.</summary>
    public static void ProxyError(string path, IReadOnlyList<string> layers, IReadOnlyDictionary<string, double[]> byMethod, string title)
    {
        var plt = new Plot();
        double[] xs = Enumerable.Range(0, layers.Count).Select(i => (double)i).ToArray();
        foreach (var (method, errors) in Ordered(byMethod))
        {
            var sc = plt.Add.Scatter(xs, errors.Select(e => Math.Log10(Math.Max(e, 1e-12))).ToArray());
            sc.LegendText = method.ToUpperInvariant();
            sc.MarkerSize = 6;
        }
        plt.ShowLegend(Alignment.UpperRight);
        plt.Title(title);
        plt.YLabel("log10 tr(E A Eᵀ) / tr(W A Wᵀ)");
        plt.Axes.Bottom.TickGenerator = new ScottPlot.TickGenerators.NumericManual(xs, layers.ToArray());
        plt.Axes.Bottom.TickLabelStyle.Rotation = 60;
        plt.Axes.Bottom.TickLabelStyle.Alignment = Alignment.MiddleLeft;
        plt.Axes.Bottom.TickLabelStyle.FontSize = 9;
        plt.Axes.Bottom.MinimumSize = 170;
        Save(plt, path, 1100, 650);
    }

    /// <summary>A metric against all-in bits per weight, one line per method.</summary>
    public static void AgainstBits(string path, IReadOnlyDictionary<string, List<(double Bits, double Value)>> byMethod,
                                   string yLabel, string title, double? reference, bool logY)
    {
        var plt = new Plot();
        foreach (var (method, points) in Ordered(byMethod))
        {
            var sorted = points.OrderBy(p => p.Bits).ToArray();
            var sc = plt.Add.Scatter(sorted.Select(p => p.Bits).ToArray(),
                sorted.Select(p => logY ? Math.Log10(Math.Max(p.Value, 1e-6)) : p.Value).ToArray());
            sc.LegendText = method;
            sc.MarkerSize = 8;
        }
        if (reference is { } r)
        {
            var line = plt.Add.HorizontalLine(logY ? Math.Log10(Math.Max(r, 1e-6)) : r);
            line.LegendText = "full precision";
            line.LinePattern = LinePattern.Dashed;
        }
        plt.ShowLegend(Alignment.LowerRight);
        plt.Title(title);
        plt.XLabel("bits per weight, all-in");
        plt.YLabel(logY ? $"log10 {yLabel}" : yLabel);
        Save(plt, path, 800, 500);
    }
}
