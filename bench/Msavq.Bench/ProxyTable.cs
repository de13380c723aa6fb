using System.Globalization;
using Msavq.MLNet;
using Msavq.MLNet.Calibration;
using Msavq.MLNet.Quantization;
using Msavq.MLNet.Sensitivity;
using Msavq.MLNet.Synthetic;
using static TorchSharp.torch;

namespace Msavq.Bench;

/// <summary>
/// `msavq-bench proxy`: every method on one synthetic layer at one all-in budget, through the dispatcher the chain
/// uses (<see cref="LayerQuantizer.QuantizeOne"/>); prints a Markdown table of bits, relative proxy error
/// tr(E A Eᵀ)/tr(W A Wᵀ), the first+second-order loss model and time.
/// </summary>
public static class ProxyTable
{
    public static int Run(int size, int samples, ulong seed, double budget)
    {
        var layer = SyntheticLayer.Create(size, size, samples, seed);
        var w = layer.W.to(ScalarType.Float32);
        using var stats = ModalityStatistics.FromMoments("synthetic", layer.A, layer.G, layer.B);
        var inv = CultureInfo.InvariantCulture;
        var rows = new List<string[]>();
        SensitivityEstimator.Options Plan(QuantizationMethod method, int d = 2, bool mixed = true) => new()
        {
            Method = method, TargetBitsPerWeight = budget, VectorDimension = d, ColumnsPerGroup = method == QuantizationMethod.Gptvq ? 256 : Defaults.ColumnsPerGroup,
            MixedPrecision = mixed,
        };
        var settings = new (string Name, SensitivityEstimator.Options Plan, MixedPrecisionVqEstimator.Options Quantize)[]
        {
            ("RTN", Plan(QuantizationMethod.Rtn), new()),
            ("GPTQ", Plan(QuantizationMethod.Gptq), new()),
            ("GPTVQ d=2", Plan(QuantizationMethod.Gptvq, 2), new()),
            ("GPTVQ d=4", Plan(QuantizationMethod.Gptvq, 4), new()),
            ("MSAVQ d=2, uniform", Plan(QuantizationMethod.Msavq, 2, mixed: false), new()),
            ("MSAVQ d=2", Plan(QuantizationMethod.Msavq, 2), new()),
            ("MSAVQ d=2 + shift", Plan(QuantizationMethod.Msavq, 2), new() { GradientShift = true }),
        };
        foreach (var (name, p, quantize) in settings)
        {
            try
            {
                using var r = LayerQuantizer.QuantizeOne("synthetic", w, stats, p, quantize);
                rows.Add(new[]
                {
                    name, r.Report.BitsPerWeight.ToString("F3", inv), r.Report.ProxyError.ToString("F4", inv),
                    HessianFactor.LossModel(layer.W, r.Weight, layer.A, layer.G, layer.B).ToString("G4", inv),
                    r.Report.Seconds.ToString("F1", inv),
                });
            }
            catch (ArgumentException e) { rows.Add(new[] { name, "—", e.Message, "", "" }); }
            Console.Error.WriteLine(string.Join(" | ", rows[^1]));
        }

        Console.WriteLine($"Synthetic layer {size}×{size}, {samples} calibration tokens, seed {seed} (src/Models/Synthetic/SyntheticLayer.cs), " +
                          $"budget ≤ {budget.ToString(inv)} bits/weight all-in.");
        Console.WriteLine();
        Console.WriteLine("| method | bits/weight all-in | proxy error tr(EAEᵀ)/tr(WAWᵀ) | ⟨G,ΔW⟩ + ½tr(ΔW A ΔWᵀ diag b) | seconds |");
        Console.WriteLine("|---|---:|---:|---:|---:|");
        foreach (var r in rows) Console.WriteLine("| " + string.Join(" | ", r) + " |");
        return 0;
    }
}
