using System.Diagnostics;
using System.Globalization;
using Msavq.MLNet.Quantization;
using static TorchSharp.torch;

namespace Msavq.Bench;

/// <summary>
/// `msavq-bench proxy`: every method on one synthetic layer at an all-in budget ≤ 2.25 bits/weight; prints a
/// Markdown table of bits, relative proxy error tr(E A Eᵀ)/tr(W A Wᵀ), the first+second-order loss model and time.
/// </summary>
public static class ProxyTable
{
    public static int Run(int size, int samples, ulong seed)
    {
        var layer = SyntheticLayer.Create(size, size, samples, seed);
        var (w, a, g, b) = (layer.W.to(ScalarType.Float32), layer.A, layer.G, layer.B);
        var rows = new List<(string Method, string Setting, Func<Tensor> Run, Func<BitCost> Cost)>();
        var shiftOptions = new GradientShiftOptions { Beta = 1.0 };
        var wStar = GradientShift.OneSided(w, g, a, b, shiftOptions);
        var vq2 = VqLayout.ForGroupSize(size, size, 2, 256, 2048);
        var vq4 = VqLayout.ForGroupSize(size, size, 4, 256, 65536);

        var results = new List<string[]>();
        void Measure(string method, string setting, Func<(Tensor WHat, BitCost Cost)> run)
        {
            var sw = Stopwatch.StartNew();
            var (wHat, cost) = run();
            double seconds = sw.Elapsed.TotalSeconds;
            var inv = CultureInfo.InvariantCulture;
            results.Add(new[]
            {
                method, setting, cost.BitsPerWeight.ToString("F3", inv),
                HessianFactor.RelativeProxyError(layer.W, wHat, a).ToString("F4", inv),
                HessianFactor.LossModel(layer.W, wHat, a, g, b).ToString("G4", inv),
                seconds.ToString("F1", inv),
            });
            Console.Error.WriteLine(string.Join(" | ", results[^1]));
        }

        Measure("RTN", "2-bit, g128", () => { var q = RoundToNearest.Quantize(w, 2, 128); return (q.Dequantize(), q.Cost()); });
        Measure("GPTQ", "2-bit, g128", () => { var q = Gptq.Quantize(w, a, new GptqOptions { Bits = 2, GroupSize = 128 }); return (q.Dequantize(), q.Cost()); });
        Measure("GPTQ", "2-bit, g128, act-order, static groups", () => { var q = Gptq.Quantize(w, a, new GptqOptions { Bits = 2, GroupSize = 128, ActOrder = true, StaticGroups = true }); return (q.Dequantize(), q.Cost()); });
        Measure("GPTVQ", $"d=2, K=16, {vq2.RowsPerGroup}×{vq2.ColumnsPerGroup} tiles, int8", () => { var q = Gptvq.Quantize(w, a, new GptvqOptions { VectorDim = 2, ColumnsPerGroup = 256, WeightsPerCodebook = 2048 }); return (q.Dequantize(), q.Cost()); });
        Measure("GPTVQ", $"d=4, K=256, {vq4.RowsPerGroup}×{vq4.ColumnsPerGroup} tiles, int8", () => { var q = Gptvq.Quantize(w, a, new GptvqOptions { VectorDim = 4, ColumnsPerGroup = 256, WeightsPerCodebook = 65536 }); return (q.Dequantize(), q.Cost()); });
        Measure("BlockLDLQ", "d=2, K=16, same tiles", () => { var q = BlockLdlq.Quantize(w, a, null, new BlockLdlqOptions { Layout = vq2, CodebookSize = 16 }); return (q.Dequantize(), q.Cost()); });
        Measure("BlockLDLQ", "d=4, K=256, same tiles", () => { var q = BlockLdlq.Quantize(w, a, null, new BlockLdlqOptions { Layout = vq4, CodebookSize = 256 }); return (q.Dequantize(), q.Cost()); });
        Measure("BlockLDLQ + b", "d=4, K=256, output factor b", () => { var q = BlockLdlq.Quantize(w, a, b, new BlockLdlqOptions { Layout = vq4, CodebookSize = 256 }); return (q.Dequantize(), q.Cost()); });
        Measure("BlockLDLQ + b + shift", "d=4, K=256, β=1", () => { var q = BlockLdlq.Quantize(wStar, a, b, new BlockLdlqOptions { Layout = vq4, CodebookSize = 256 }); return (q.Dequantize(), q.Cost()); });

        Console.WriteLine($"Synthetic layer {size}×{size}, {samples} calibration tokens, seed {seed} (bench/Msavq.Bench/SyntheticLayer.cs).");
        Console.WriteLine();
        Console.WriteLine("| method | setting | bits/weight all-in | proxy error tr(EAEᵀ)/tr(WAWᵀ) | ⟨G,ΔW⟩ + ½tr(ΔW A ΔWᵀ diag b) | seconds |");
        Console.WriteLine("|---|---|---:|---:|---:|---:|");
        foreach (var r in results) Console.WriteLine("| " + string.Join(" | ", r) + " |");
        return 0;
    }
}
