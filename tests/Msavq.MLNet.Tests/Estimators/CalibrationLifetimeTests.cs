using System.Runtime.CompilerServices;
using Microsoft.ML;
using Microsoft.ML.Data;
using Msavq.MLNet.Calibration;
using Msavq.MLNet.Models;
using Msavq.MLNet.Sensitivity;
using Msavq.MLNet.Tests.Models;

namespace Msavq.MLNet.Tests.Estimators;

/// <summary>What a fit keeps alive, and for how long (issue 16.2).</summary>
[TestClass]
public sealed class CalibrationLifetimeTests
{
    /// <summary>A pass-through step that hands the test the calibration riding on the view.</summary>
    private sealed class Spy : IEstimator<ITransformer>
    {
        public CalibrationResult? Seen { get; private set; }
        public SchemaShape GetOutputSchema(SchemaShape inputSchema) => inputSchema;
        public ITransformer Fit(IDataView input)
        {
            Seen = ((ICarriesCalibration)input).Calibration;
            return new TransformerChain<ITransformer>();
        }
    }

    /// <summary>Reports synchronously (Progress&lt;T&gt; posts to the thread pool).</summary>
    private sealed class OnProgress(Action<QuantizationProgress> report) : IProgress<QuantizationProgress>
    {
        public void Report(QuantizationProgress value) => report(value);
    }

    private static CalibrationCollector.Options Collect(IQuantizableModel model) => new()
    {
        Model = model, BatchSize = 8, Mode = CalibrationMode.Sequential, Roles = new[] { LayerRole.Language, LayerRole.Projector },
    };

    private static SensitivityEstimator Sensitivity(MLContext ml, double bits = 3.5, QuantizationMethod method = QuantizationMethod.Rtn) =>
        ml.Msavq().EstimateSensitivity(new SensitivityEstimator.Options { TargetBitsPerWeight = bits, Method = method, WeightsPerCodebook = 256 });

    [MethodImpl(MethodImplOptions.NoInlining)]
    private static (TransformerChain<MixedPrecisionVqTransformer> Chain, WeakReference Model) FitAndForgetTheModel(MLContext ml)
    {
        var model = TinyVlm.Create(8);
        return (TinyChain.Fit(ml, QuantizationMethod.Rtn, 3.5, model, CalibrationMode.Sequential), new WeakReference(model));
    }

    [TestMethod]
    public void FittedChain_KeepsNeitherStatisticsNorRowsNorTheFullPrecisionModel()
    {
        var ml = new MLContext(0);
        var (chain, model) = FitAndForgetTheModel(ml);
        using (chain)
        {
            var calibration = chain.OfType<CalibrationTransformer>().Single();
            Assert.IsTrue(calibration.Result.IsDisposed, "the chain's calibration is released once its quantizer is done");
            var e = Assert.ThrowsExactly<ObjectDisposedException>(() => calibration.Result.Statistics);
            StringAssert.Contains(e.Message, "Fit the CalibrationCollector on its own");
            Assert.ThrowsExactly<ObjectDisposedException>(() => calibration.Result.Rows);
            Assert.ThrowsExactly<ObjectDisposedException>(() => chain.OfType<SensitivityTransformer>().Single().Calibration.Model);
            for (int i = 0; i < 3 && model.IsAlive; i++) { GC.Collect(); GC.WaitForPendingFinalizers(); }
            Assert.IsFalse(model.IsAlive, "the fitted chain does not keep the full-precision model reachable");
            // What scoring needs is still there.
            Assert.AreEqual(4, chain.Transform(ShapesVqaRows(ml, 4)).GetColumn<string>(MixedPrecisionVqTransformer.PredictedAnswerColumn).Count());
        }
    }

    private static IDataView ShapesVqaRows(MLContext ml, int n) => MLNet.Data.ShapesVqa.Generate(ml, MLNet.Data.ShapesVqaSplit.Test, n);

    [TestMethod]
    public void ChainFit_FreesEachLayersStatistics_AsSoonAsItIsQuantized()
    {
        var ml = new MLContext(0);
        var spy = new Spy();
        var quantizedSoFar = new List<string>();
        int checkedLayers = 0;
        var quantize = new MixedPrecisionVqEstimator.Options
        {
            Progress = new OnProgress(p =>
            {
                if (p.Stage != "quantize" || p.Layer is null) return;
                var r = spy.Seen!;
                foreach (var done in quantizedSoFar)
                    Assert.ThrowsExactly<ObjectDisposedException>(() => r.StatisticsOf(done), $"'{done}' was quantized before '{p.Layer}'");
                Assert.IsNotNull(r.StatisticsOf(p.Layer));
                quantizedSoFar.Add(p.Layer);
                checkedLayers++;
            }),
        };
        using var model = TinyVlm.Create(8);
        using var chain = ml.Msavq().CollectCalibration(Collect(model))
            .Append(Sensitivity(ml)).Append(spy).Append(ml.Msavq().QuantizeMixedPrecisionVq(quantize))
            .Fit(TinyChain.Calibration(ml));
        Assert.IsGreaterThan(4, checkedLayers);
        Assert.IsTrue(spy.Seen!.IsDisposed);
    }

    [TestMethod]
    public void ChainFitThatFails_FreesTheStatistics()
    {
        var ml = new MLContext(0);
        var spy = new Spy();
        using var model = TinyVlm.Create(8);
        var e = Assert.ThrowsExactly<ArgumentException>(() => ml.Msavq().CollectCalibration(Collect(model))
            .Append(spy).Append(Sensitivity(ml, bits: 0.5)).Append(ml.Msavq().QuantizeMixedPrecisionVq())
            .Fit(TinyChain.Calibration(ml)));
        StringAssert.Contains(e.Message, "0.5 bits/weight");
        Assert.IsTrue(spy.Seen!.IsDisposed, "a failed chain fit leaves no statistics to the finalizer");
    }

    /// <summary>How benchmarks compare methods: one calibration, fitted on its own, feeds several fits until disposed.</summary>
    [TestMethod]
    public void CollectorFittedOnItsOwn_FeedsSeveralFits_UntilItIsDisposed()
    {
        var ml = new MLContext(0);
        using var model = TinyVlm.Create(8);
        var data = TinyChain.Calibration(ml);
        var collector = ml.Msavq().CollectCalibration(Collect(model)).Fit(data);
        var calibrated = collector.Transform(data);
        foreach (var method in new[] { QuantizationMethod.Rtn, QuantizationMethod.Gptq, QuantizationMethod.Rtn })
        {
            var sensitivity = Sensitivity(ml, method: method).Fit(calibrated);
            using var q = ml.Msavq().QuantizeMixedPrecisionVq().Fit(sensitivity.Transform(calibrated));
            Assert.IsTrue(q.Layers.All(l => l.Method == method.ToString()));
        }
        Assert.IsFalse(collector.Result.IsDisposed);
        collector.Dispose();
        Assert.IsTrue(collector.Result.IsDisposed);
        var e = Assert.ThrowsExactly<ObjectDisposedException>(() => Sensitivity(ml).Fit(calibrated));
        StringAssert.Contains(e.Message, "Dispose");
    }

    private static long ResidentBytes() =>
        long.Parse(File.ReadLines("/proc/self/status").First(l => l.StartsWith("VmRSS:")).Split(' ', StringSplitOptions.RemoveEmptyEntries)[1]) * 1024;

    [TestMethod]
    public void TwentyFits_DisposedEachTime_DoNotGrowResidentMemory()
    {
        var ml = new MLContext(0);
        using var model = TinyVlm.Create(8);
        var fit = System.Diagnostics.Stopwatch.StartNew();
        var gc = new System.Diagnostics.Stopwatch();
        void FitOnce()
        {
            fit.Start();
            using var chain = TinyChain.Fit(ml, QuantizationMethod.Rtn, 3.5, model, CalibrationMode.OneShot);
            fit.Stop();
        }
        void FullGc() { gc.Start(); GC.Collect(); GC.WaitForPendingFinalizers(); GC.Collect(); gc.Stop(); }
        for (int i = 0; i < 3; i++) FitOnce();   // warm-up: JIT, ML.NET's catalogs, libtorch's pools
        FullGc();
        long rss = ResidentBytes();
        for (int i = 0; i < 20; i++)
        {
            FitOnce();
            FullGc();
        }
        long growth = ResidentBytes() - rss;
        Console.WriteLine($"resident growth {growth / 1048576.0:F1} MB; fits {fit.Elapsed.TotalSeconds:F1} s, collections {gc.Elapsed.TotalSeconds:F1} s");
        Assert.IsLessThan(200L << 20, growth);
    }
}
