using Microsoft.ML;
using Msavq.MLNet.Calibration;
using Msavq.MLNet.Format;
using Msavq.MLNet.Quantization;
using Msavq.MLNet.Sensitivity;
using Msavq.MLNet.Synthetic;
using Msavq.MLNet.Tests.Models;
using TorchSharp;
using static TorchSharp.torch;

namespace Msavq.MLNet.Tests.Estimators;

/// <summary>
/// Issue 16.4: the engine passes every number to libtorch as an explicit Scalar it disposes, so the finalizer never
/// holds one libtorch may still be reading (the race RmsNorm met). Counted with <see cref="FinalizedScalars"/>, and
/// exercised: k-means and a small chain give the same bits while another thread forces collections.
/// </summary>
[TestClass]
public sealed class FinalizerRaceTests
{
    [TestMethod]
    public void Counter_SeesTheScalarsOfTorchSharpsOperators()
    {
        using var counter = new FinalizedScalars();
        using var t = ones(3);
        // `t * 2.0` makes a Scalar nobody disposes; `t + t` one too (its alpha = 1); an explicit one is disposed.
        Assert.AreEqual(5, counter.During(() => { for (int i = 0; i < 5; i++) (t * 2.0).Dispose(); }), "t * 2.0");
        Assert.AreEqual(5, counter.During(() => { for (int i = 0; i < 5; i++) (t + t).Dispose(); }), "t + t");
        Assert.AreEqual(0, counter.During(() =>
        {
            using var two = 2.0.ToScalar();
            for (int i = 0; i < 5; i++) t.mul(two).Dispose();
        }), "explicit");
    }

    [TestMethod]
    public void Engine_LeavesNoScalarToTheFinalizer()
    {
        var layer = SyntheticLayer.Create(32, 64, 512, 5);
        var w = layer.W.to(ScalarType.Float32);
        var b32 = layer.B.to(ScalarType.Float32);
        var bFull = layer.G.matmul(layer.G.t()) + eye(32, dtype: ScalarType.Float64);   // (the test's own Scalars are made here)
        var steps = new (string Name, Action Run)[]
        {
            ("k-means, Mahalanobis init, chunked", () =>
            {
                using var g = new Generator(1);
                var z = randn(300, 4, ScalarType.Float64, generator: g);
                WeightedKMeans.Fit(z, rand(300, 4, ScalarType.Float64, generator: g), 16, new KMeansOptions { ChunkElements = 16 * 7 });
            }),
            ("k-means++", () =>
            {
                using var g = new Generator(2);
                WeightedKMeans.Fit(randn(200, 2, ScalarType.Float64, generator: g), null, 8,
                    new KMeansOptions { Init = CodebookInit.KMeansPlusPlus, Seed = 3 });
            }),
            ("k-means, empty clusters re-seeded", () =>
                WeightedKMeans.Fit(tensor(new double[] { 3, 3, 3, 3, 4, 4, 4, 4, 5, 5 }).reshape(5, 2), null, 8, new KMeansOptions { Iterations = 5 })),
            ("k-means, batched", () =>
            {
                using var g = new Generator(4);
                WeightedKMeans.FitBatched(randn(3, 200, 2, generator: g), rand(3, 200, 2, generator: g), 8, new KMeansOptions());
            }),
            ("GPTQ, act-order, static groups", () => Gptq.Quantize(w, layer.A, new GptqOptions { Bits = 3, GroupSize = 16, ActOrder = true, StaticGroups = true }).Dequantize()),
            ("GPTQ, dynamic groups", () => Gptq.Quantize(w, layer.A, new GptqOptions { Bits = 2, GroupSize = 16 }).Dequantize()),
            ("GPTQ, per channel, symmetric", () => Gptq.Quantize(w, layer.A, new GptqOptions { Bits = 4, Symmetric = true }).Dequantize()),
            ("GPTVQ", () => Gptvq.Quantize(w, layer.A, new GptvqOptions { ColumnsPerGroup = 32, WeightsPerCodebook = 512 }).Dequantize()),
            ("BlockLDLQ, mixed tiles", () => BlockLdlq.Quantize(w, layer.A, b32, new BlockLdlqOptions
            {
                Layout = new VqLayout(2, 8, 32), TileCodebookSizes = Enumerable.Range(0, 8).Select(i => i % 2 == 0 ? 16 : 8).ToArray(),
            }).Dequantize()),
            ("BlockLDLQ, forward, Euclidean, fp16", () => BlockLdlq.Quantize(w, layer.A, null, new BlockLdlqOptions
            {
                Layout = new VqLayout(2, 16, 32), Forward = true, EuclideanAssignment = true, Precision = CodebookPrecision.Float16,
            }).Dequantize()),
            ("RTN", () => { RoundToNearest.Quantize(w, 3, 16).Dequantize(); RoundToNearest.DequantizePlainMinMax(w, 2, 16); }),
            ("dead inputs, proxy error, loss model", () =>
            {
                var a = layer.A.clone();
                a[3] = zeros(64, ScalarType.Float64); a[.., 3] = zeros(64, ScalarType.Float64);
                var (h, wd, _) = HessianFactor.HandleDeadInputs(a, w);
                HessianFactor.RelativeProxyError(w, wd, h);
                HessianFactor.LossModel(w, wd, h, layer.G, layer.B);
            }),
            ("gradient shift", () =>
            {
                var shifted = GradientShift.OneSided(w, layer.G, layer.A, layer.B, new GradientShiftOptions());
                GradientShift.Kronecker(w, layer.G, layer.A, bFull, new GradientShiftOptions());
                GradientShift.TrustScale(shifted - w, shifted, layer.A, 0.3, 0.05);
            }),
            ("salience", () =>
            {
                var damped = HessianFactor.Damp(layer.A, 0.01);
                Salience.Elements(layer.W, damped, layer.B, layer.G, LocalSalience.Gradient);
                Salience.Local(layer.W, damped, layer.B, new VqLayout(2, 8, 32));
                Salience.Global(layer.W, layer.A, layer.B, 2);
            }),
            ("statistics", () =>
            {
                using var g = new Generator(5);
                using var s = new ModalityStatistics("x", 64, 32, CPU);
                s.Add(true, randn(20, 64, generator: g), randn(20, 32, generator: g), randn(20, 32, generator: g));
                s.Add(false, randn(30, 64, generator: g), randn(30, 32, generator: g), randn(30, 32, generator: g));
                s.Combine(2.0);
                s.ModalityAffinity();
            }),
        };
        var methods = Enum.GetValues<QuantizationMethod>().Select(m => (Name: $"layer step, {m}", Run: (Action)(() =>
        {
            using var stats = ModalityStatistics.FromMoments("x", layer.A, layer.G, layer.B);
            var plan = new SensitivityEstimator.Options
            {
                Method = m, TargetBitsPerWeight = m is QuantizationMethod.Gptvq or QuantizationMethod.Msavq ? 2.5 : 3.5,
                WeightsPerCodebook = 256, ColumnsPerGroup = 32, RowScales = true, Curvature = Curvature.Fisher,
                ColumnGrouping = ColumnGrouping.Salience,
            };
            using var r = LayerQuantizer.QuantizeOne("x", w, stats, plan,
                new MixedPrecisionVqEstimator.Options { GradientShift = true, KMeansIterations = 10 });
        })));

        using var counter = new FinalizedScalars();
        var leaks = steps.Concat(methods).Select(s =>
        {
            int n = counter.During(() => { using (NewDisposeScope()) s.Run(); });
            return (s.Name, Scalars: n);
        }).Where(s => s.Scalars > 0).ToList();
        Assert.IsEmpty(leaks, "Scalars left to the finalizer: " + string.Join("; ", leaks));
    }

    [TestMethod]
    public void Chain_LeavesNoScalarToTheFinalizer()
    {
        var ml = new MLContext(0);
        using var counter = new FinalizedScalars();
        int n = counter.During(() => TinyChain.Fit(ml, QuantizationMethod.Msavq, 2.75, TinyVlm.Create(7), CalibrationMode.Sequential,
            quantize: o => { o.GradientShift = true; o.FineTuneSteps = 3; }));
        Assert.AreEqual(0, n, "Scalars left to the finalizer by calibration, planning, quantization and fine-tuning");
    }

    /// <summary>
    /// The brief of issue 16.4: k-means (single and batched) and a small MSAVQ chain, run while another thread allocates
    /// and forces full collections with finalizers, give exactly what a quiet run gives, every time.
    /// </summary>
    [TestMethod]
    public void KMeansAndChain_UnderGcPressure_EqualAQuietRun()
    {
        var ml = new MLContext(0);
        byte[] KMeans()
        {
            using var scope = NewDisposeScope();
            using var g = new Generator(11);
            var z = randn(400, 2, ScalarType.Float64, generator: g);
            var (c, a) = WeightedKMeans.Fit(z, rand(400, 2, ScalarType.Float64, generator: g), 16, new KMeansOptions());
            var (cb, ab) = WeightedKMeans.FitBatched(randn(4, 300, 2, generator: g), rand(4, 300, 2, generator: g), 8,
                new KMeansOptions { Init = CodebookInit.KMeansPlusPlus, Seed = 2 });
            return new[] { c, a, cb, ab }.SelectMany(t => t.contiguous().bytes.ToArray()).ToArray();
        }
        byte[] Chain() => QuantizedModelFile.ToBytes(TinyChain.Fit(ml, QuantizationMethod.Msavq, 2.75, TinyVlm.Create(3),
            CalibrationMode.OneShot, quantize: o => o.GradientShift = true).LastTransformer.Quantized);

        var quietKMeans = KMeans();
        var quietChain = Chain();
        using var stop = new CancellationTokenSource();
        long collections = 0;
        var pressure = new Thread(() =>
        {
            var keep = new List<object>();
            while (!stop.IsCancellationRequested)
            {
                for (int i = 0; i < 2000; i++) keep.Add(new byte[64 + i % 512]);
                if (keep.Count > 20000) keep.Clear();
                GC.Collect();
                GC.WaitForPendingFinalizers();
                Interlocked.Increment(ref collections);
            }
        }) { IsBackground = true };
        pressure.Start();
        try
        {
            for (int i = 0; i < 40; i++) CollectionAssert.AreEqual(quietKMeans, KMeans(), $"k-means, run {i}");
            for (int i = 0; i < 3; i++) CollectionAssert.AreEqual(quietChain, Chain(), $"chain, run {i}");
        }
        finally
        {
            stop.Cancel();
            pressure.Join();
        }
        Assert.IsGreaterThan(100L, Interlocked.Read(ref collections), "the other thread kept collecting");
    }
}
