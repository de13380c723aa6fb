using Msavq.MLNet.Synthetic;
using BenchmarkDotNet.Configs;
using BenchmarkDotNet.Jobs;
using BenchmarkDotNet.Running;
using BenchmarkDotNet.Toolchains.InProcess.Emit;

namespace Msavq.Bench.Kernels;

/// <summary><c>msavq-bench kernels</c>: the BenchmarkDotNet runs behind bench/RESULTS.md's kernel table.</summary>
public static class KernelBenchmarks
{
    public static int Run(string[] args)
    {
        // In-process: the bench binary already carries the patched libtorch; a generated project would rebuild it.
        // Bytes per call, for GB/s (time from the table below): what each kernel must read from memory when cold.
        foreach (var name in new[] { "d2-K16", "d4-K256" })
        {
            var (d, k, rows, cols) = LinearKernelBenchmarks.Shape(name);
            var layer = SyntheticQuantizedLayer.Create(LinearKernelBenchmarks.Size, LinearKernelBenchmarks.Size, d, rows, cols, _ => k);
            var packed = Msavq.MLNet.Kernels.PackedVqWeight.From(layer);
            Console.WriteLine($"{name}: look-up kernel streams {packed.StreamedBytes / 1048576.0:F2} MiB per call " +
                              $"(codes {packed.Codes.Length / 1048576.0:F2} MiB); {layer.Cost().BitsPerWeight:F3} bits/weight stored; " +
                              $"fp32 matrix {4.0 * layer.Rows * layer.Columns / 1048576:F0} MiB");
        }
        var job = Job.Default.WithToolchain(InProcessEmitToolchain.Instance).WithWarmupCount(3).WithIterationCount(12);
        var config = DefaultConfig.Instance.AddJob(job).WithOptions(ConfigOptions.DisableOptimizationsValidator);
        BenchmarkSwitcher.FromTypes(new[] { typeof(ReadBandwidthBenchmark), typeof(LinearKernelBenchmarks) })
            .Run(args.Length > 0 ? args : new[] { "--filter", "*" }, config);
        return 0;
    }
}
