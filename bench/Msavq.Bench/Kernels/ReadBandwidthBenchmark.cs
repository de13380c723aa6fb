using System.Numerics;
using BenchmarkDotNet.Attributes;

namespace Msavq.Bench.Kernels;

/// <summary>This machine's read bandwidth: every core sums its share of 512 MiB (what a GEMV at batch 1 is bound by).</summary>
public class ReadBandwidthBenchmark
{
    public const long Bytes = 512L << 20;
    private float[] _data = Array.Empty<float>();

    [GlobalSetup]
    public void Setup()
    {
        _data = new float[Bytes / sizeof(float)];
        new Random(0).NextBytes(System.Runtime.InteropServices.MemoryMarshal.AsBytes(_data.AsSpan()));
        for (int i = 0; i < _data.Length; i++) if (!float.IsFinite(_data[i])) _data[i] = 0;
    }

    [Benchmark(Description = "read 512 MiB")]
    public float Read()
    {
        var partial = new float[Environment.ProcessorCount];
        Parallel.For(0, partial.Length, t =>
        {
            long n = _data.Length, i0 = n * t / partial.Length, i1 = n * (t + 1) / partial.Length;
            var acc = Vector<float>.Zero;
            for (long i = i0; i + Vector<float>.Count <= i1; i += Vector<float>.Count) acc += new Vector<float>(_data, (int)i);
            partial[t] = Vector.Sum(acc);
        });
        return partial.Sum();
    }
}
