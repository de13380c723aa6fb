using System.Diagnostics;
using Msavq.MLNet.Quantization;
using static TorchSharp.torch;

namespace Msavq.Bench;

/// <summary>
/// `msavq-bench quantize-time METHOD`: seconds to quantize one size×size layer from its Hessian, and the process's
/// peak resident memory (VmHWM). One method per process, so each peak is its own.
/// </summary>
public static class QuantizeTime
{
    public static int Run(string method, int size, int samples)
    {
        var layer = SyntheticLayer.Create(size, size, samples, 0);
        var w = layer.W.to(ScalarType.Float32);
        double before = PeakMiB();
        var sw = Stopwatch.StartNew();
        BitCost cost = method switch
        {
            "gptq" => Gptq.Quantize(w, layer.A, new GptqOptions { Bits = 2, GroupSize = 128 }).Cost(),
            "gptvq-d2" => Gptvq.Quantize(w, layer.A, new GptvqOptions { VectorDim = 2, WeightsPerCodebook = 2048 }).Cost(),
            "gptvq-d4" => Gptvq.Quantize(w, layer.A, new GptvqOptions { VectorDim = 4, WeightsPerCodebook = 65536 }).Cost(),
            "ldlq-shift" => BlockLdlq.Quantize(GradientShift.OneSided(w, layer.G, layer.A, layer.B, new GradientShiftOptions()),
                layer.A, layer.B, new BlockLdlqOptions { Layout = VqLayout.ForGroupSize(size, size, 4, 256, 65536), CodebookSize = 256 }).Cost(),
            _ => throw new ArgumentException($"unknown method '{method}'"),
        };
        double seconds = sw.Elapsed.TotalSeconds;
        Console.WriteLine($"| {method} | {size}×{size} | {cost.BitsPerWeight:F3} | {seconds:F1} | {PeakMiB():F0} (setup {before:F0}) |");
        return 0;
    }

    private static double PeakMiB()
    {
        foreach (var line in File.ReadLines("/proc/self/status"))
            if (line.StartsWith("VmHWM:", StringComparison.Ordinal))
                return double.Parse(line.Split(' ', StringSplitOptions.RemoveEmptyEntries)[1]) / 1024;
        return double.NaN;
    }
}
