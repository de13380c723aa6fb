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
        var job = Job.Default.WithToolchain(InProcessEmitToolchain.Instance).WithWarmupCount(3).WithIterationCount(12);
        var config = DefaultConfig.Instance.AddJob(job).WithOptions(ConfigOptions.DisableOptimizationsValidator);
        BenchmarkSwitcher.FromTypes(new[] { typeof(ReadBandwidthBenchmark), typeof(LinearKernelBenchmarks) })
            .Run(args.Length > 0 ? args : new[] { "--filter", "*" }, config);
        return 0;
    }
}
