using System.Diagnostics;
using Msavq.MLNet;
using Msavq.MLNet.Calibration;
using Msavq.MLNet.Sensitivity;
using Msavq.MLNet.Synthetic;
using static TorchSharp.torch;

namespace Msavq.Bench;

/// <summary>
/// `msavq-bench quantize-time --method M`: seconds to quantize one size×size layer from its statistics, through the
/// dispatcher the chain uses, and the process's peak resident memory (VmHWM). One method per process, so each peak is
/// its own.
/// </summary>
public static class QuantizeTime
{
    public static int Run(string method, int size, int samples, bool fused = false)
    {
        var layer = SyntheticLayer.Create(size, size, samples, 0);
        var w = layer.W.to(ScalarType.Float32);
        using var stats = ModalityStatistics.FromMoments("synthetic", layer.A, layer.G, layer.B);
        // Codebooks shared by 2,048 weights at d = 2 and 65,536 at d = 4 (GPTVQ's scripts), 256 columns per tile.
        var (plan, options) = method switch
        {
            "gptq" => (new SensitivityEstimator.Options { Method = QuantizationMethod.Gptq, TargetBitsPerWeight = 2.25 }, new MixedPrecisionVqEstimator.Options()),
            "gptvq-d2" => (Vq(QuantizationMethod.Gptvq, 2, 2048, 2.1328125), new MixedPrecisionVqEstimator.Options()),
            "gptvq-d4" => (Vq(QuantizationMethod.Gptvq, 4, 65536, 2.125), new MixedPrecisionVqEstimator.Options()),
            "msavq-d2" => (Vq(QuantizationMethod.Msavq, 2, 2048, 2.1328125), new MixedPrecisionVqEstimator.Options()),
            "msavq-d4-shift" => (Vq(QuantizationMethod.Msavq, 4, 65536, 2.125), new MixedPrecisionVqEstimator.Options { GradientShift = true }),
            _ => throw new ArgumentException($"unknown method '{method}' (gptq, gptvq-d2, gptvq-d4, msavq-d2, msavq-d4-shift)"),
        };
        options.FusedKMeans = fused;
        double before = PeakMiB();
        var sw = Stopwatch.StartNew();
        using var result = LayerQuantizer.QuantizeOne("synthetic", w, stats, plan, options);
        double seconds = sw.Elapsed.TotalSeconds;
        Console.WriteLine($"| {method}{(fused ? " (fused)" : "")} | {size}×{size} | {result.Report.BitsPerWeight:F3} | {seconds:F1} | {PeakMiB():F0} (setup {before:F0}) |");
        return 0;
    }

    private static SensitivityEstimator.Options Vq(QuantizationMethod method, int d, long weightsPerCodebook, double budget) => new()
    {
        Method = method, VectorDimension = d, TargetBitsPerWeight = budget, ColumnsPerGroup = 256,
        WeightsPerCodebook = weightsPerCodebook, MixedPrecision = false,
    };

    private static double PeakMiB()
    {
        foreach (var line in File.ReadLines("/proc/self/status"))
            if (line.StartsWith("VmHWM:", StringComparison.Ordinal))
                return double.Parse(line.Split(' ', StringSplitOptions.RemoveEmptyEntries)[1]) / 1024;
        return double.NaN;
    }
}
