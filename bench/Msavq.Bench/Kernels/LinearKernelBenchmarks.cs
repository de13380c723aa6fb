using Msavq.MLNet.Synthetic;
using System.Numerics;
using BenchmarkDotNet.Attributes;
using Msavq.MLNet.Kernels;
using static TorchSharp.torch;

namespace Msavq.Bench.Kernels;

/// <summary>
/// One 4096×4096 layer times 1 or 8 activation rows: TorchSharp fp32 <c>linear</c>, a plain C# fp32 GEMV and the
/// 2-bit look-up kernel, side by side in one run. Cold rotates over ≥ 256 MiB of distinct layers per method, so the
/// weights come from memory rather than cache; hot reuses one layer. All three use every core.
/// </summary>
[MemoryDiagnoser(false)]
public class LinearKernelBenchmarks
{
    public const int Size = 4096;
    private const long ColdBytes = 256L << 20;

    /// <summary>Both 2 bits per weight of index: d2-K16 — d = 2, K = 16, tiles of 256 rows × 32 columns
    /// (8,192 weights per int8 codebook, 2.03 bits all-in); d4-K256 — d = 4, K = 256, tiles of 1,024 rows × 64 columns
    /// (65,536 weights per codebook, 2.13 bits all-in).</summary>
    [Params("d2-K16", "d4-K256")] public string Layout = "d2-K16";

    /// <summary>d, K, rows and columns per tile of a layout.</summary>
    public static (int D, int K, int Rows, int Columns) Shape(string layout) => layout == "d2-K16" ? (2, 16, 256, 32) : (4, 256, 1024, 64);
    [Params(1, 8)] public int Batch = 1;
    [Params(false, true)] public bool Cold;

    private float[][] _dense = Array.Empty<float[]>();
    private Tensor[] _denseTensors = Array.Empty<Tensor>();
    private PackedVqWeight[] _packed = Array.Empty<PackedVqWeight>();
    private float[] _x = Array.Empty<float>(), _y = Array.Empty<float>();
    private Tensor _xt = null!;
    private int _next;

    // Each method gets only the layers it reads (a cold 2-bit set is 52–61 layers).
    [GlobalSetup(Target = nameof(LookUp))]
    public void SetupQuantized()
    {
        Activations();
        var (d, k, rows, cols) = Shape(Layout);
        var first = PackedVqWeight.From(SyntheticQuantizedLayer.Create(Size, Size, d, rows, cols, _ => k, seed: 0));
        int count = Cold ? (int)(ColdBytes / first.StreamedBytes) + 1 : 1;
        _packed = new[] { first }.Concat(Enumerable.Range(1, count - 1)
            .Select(s => PackedVqWeight.From(SyntheticQuantizedLayer.Create(Size, Size, d, rows, cols, _ => k, seed: s)))).ToArray();
    }

    [GlobalSetup(Targets = new[] { nameof(TorchLinear), nameof(CSharpGemv) })]
    public void SetupDense()
    {
        Activations();
        int count = Cold ? (int)(ColdBytes / (4L * Size * Size)) + 1 : 1;
        var rng = new Random(1);
        _dense = new float[count][];
        for (int i = 0; i < count; i++)
        {
            _dense[i] = new float[Size * Size];
            for (int j = 0; j < _dense[i].Length; j++) _dense[i][j] = (float)(rng.NextDouble() - 0.5) * 0.02f;
        }
        _denseTensors = _dense.Select(w => tensor(w, new long[] { Size, Size })).ToArray();
    }

    private void Activations()
    {
        set_num_threads(Environment.ProcessorCount);
        _x = SyntheticQuantizedLayer.Activations(Batch, Size, 2);
        _y = new float[Batch * Size];
        _xt = tensor(_x, new long[] { Batch, Size });
    }

    [GlobalCleanup]
    public void Cleanup()
    {
        foreach (var t in _denseTensors) t.Dispose();
        _xt.Dispose();
    }

    [Benchmark(Baseline = true, Description = "TorchSharp fp32 linear")]
    public void TorchLinear()
    {
        using var y = nn.functional.linear(_xt, _denseTensors[_next++ % _denseTensors.Length]);
    }

    [Benchmark(Description = "C# fp32 GEMV")]
    public void CSharpGemv() => Gemv.Multiply(_dense[_next++ % _dense.Length], Size, Size, _x, Batch, _y);

    [Benchmark(Description = "2-bit LUT kernel")]
    public void LookUp() => LutKernel.Multiply(_packed[_next++ % _packed.Length], _x, Batch, _y);
}

/// <summary>The plain C# fp32 GEMV the kernel is compared with: Vector&lt;float&gt; dot products, rows split over the cores.</summary>
public static class Gemv
{
    public static void Multiply(float[] w, int rows, int columns, float[] x, int batch, float[] y) =>
        Parallel.For(0, Environment.ProcessorCount, t =>
        {
            int r0 = rows * t / Environment.ProcessorCount, r1 = rows * (t + 1) / Environment.ProcessorCount;
            for (int i = r0; i < r1; i++)
            {
                var row = w.AsSpan(i * columns, columns);
                for (int b = 0; b < batch; b++)
                {
                    var xb = x.AsSpan(b * columns, columns);
                    var acc = Vector<float>.Zero;
                    int j = 0;
                    for (; j + Vector<float>.Count <= columns; j += Vector<float>.Count)
                        acc += new Vector<float>(row[j..]) * new Vector<float>(xb[j..]);
                    float s = Vector.Sum(acc);
                    for (; j < columns; j++) s += row[j] * xb[j];
                    y[b * rows + i] = s;
                }
            }
        });
}
