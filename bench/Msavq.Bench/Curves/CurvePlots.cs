using ScottPlot;

namespace Msavq.Bench.Curves;

/// <summary>One PNG per model and metric: every method's curve with its 95 % intervals, and the Pareto frontier.</summary>
public static class CurvePlots
{
    public static void Draw(string path, string title, CurveMetric metric, IReadOnlyList<CurvePoint> points)
    {
        bool log = metric.Name is "kl" or "nll";
        double Y(double v) => log ? Math.Log10(Math.Max(v, 1e-8)) : v;
        var plt = new Plot();
        foreach (var curve in points.GroupBy(p => p.Config.Method).OrderBy(g => g.Key))
        {
            var ordered = curve.OrderBy(p => p.Bits).ToList();
            var stats = ordered.Select(p => p.Summary(metric.Name)).ToList();
            var xs = ordered.Select(p => p.Bits).ToArray();
            var ys = stats.Select(s => Y(s.Value)).ToArray();
            var line = plt.Add.Scatter(xs, ys);
            line.LegendText = Label(curve.Key);
            line.MarkerSize = 7;
            var bars = plt.Add.ErrorBar(xs, ys, stats.Select(s => Y(s.Value) - Y(s.Low)).ToArray());
            bars.YErrorPositive = stats.Select(s => Y(s.High) - Y(s.Value)).ToArray();
            bars.Color = line.Color;
        }
        var frontier = Frontier(points.Select(p => (p.Bits, p.Summary(metric.Name).Value)).ToList(), metric.LowerIsBetter);
        if (frontier.Count > 1)
        {
            var f = plt.Add.Scatter(frontier.Select(p => p.Bits).ToArray(), frontier.Select(p => Y(p.Value)).ToArray());
            f.LegendText = "Pareto frontier";
            f.LinePattern = LinePattern.Dashed;
            f.Color = Colors.Black;
            f.MarkerSize = 0;
            f.ConnectStyle = ConnectStyle.StepHorizontal;
        }
        plt.ShowLegend(metric.LowerIsBetter ? Alignment.UpperRight : Alignment.LowerRight);
        plt.Title(title);
        plt.XLabel("bits per weight, all-in");
        plt.YLabel(log ? $"log10 {metric.Name}" : metric.Name);
        using var image = plt.GetImage(900, 560);
        Msavq.MLNet.AtomicFile.Write(path, image.GetImageBytes(ImageFormat.Png, 100));
    }

    /// <summary>The points no other point beats with as few bits or fewer.</summary>
    public static List<(double Bits, double Value)> Frontier(List<(double Bits, double Value)> points, bool lowerIsBetter)
    {
        var result = new List<(double Bits, double Value)>();
        double best = lowerIsBetter ? double.PositiveInfinity : double.NegativeInfinity;
        foreach (var p in points.OrderBy(p => p.Bits).ThenBy(p => lowerIsBetter ? p.Value : -p.Value))
            if (lowerIsBetter ? p.Value < best : p.Value > best)
            {
                best = p.Value;
                result.Add(p);
            }
        return result;
    }

    public static string Label(Msavq.MLNet.QuantizationMethod m) => m switch
    {
        Msavq.MLNet.QuantizationMethod.GptqMixed => "GPTQ + allocator",
        _ => m.ToString().ToUpperInvariant(),
    };
}
