using Msavq.MLNet.Calibration;
using Msavq.MLNet.Format;
using Msavq.MLNet.Quantization;
using Msavq.MLNet.Sensitivity;
using Msavq.MLNet.Synthetic;
using static TorchSharp.torch;

namespace Msavq.MLNet.Tests.Quantization;

/// <summary>
/// Issue 13: comparisons at equal realized bits. Every method meets a requested budget to within 0.01 b/w where its
/// grid reaches it, and the method's parts earn their place at equal bits on synthetic layers.
/// </summary>
[TestClass]
public sealed class EqualBitsTests
{
    /// <summary>ShapesVlm's four decoder blocks' linear shapes, with synthetic weights and statistics.</summary>
    private static List<PlanInput> ShapesVlmLikeLayers()
    {
        var shapes = new List<(string, int, int)>();
        for (int b = 0; b < 4; b++)
        {
            foreach (var p in new[] { "q", "k", "v", "o" }) shapes.Add(($"layers.{b}.{p}", 256, 256));
            shapes.Add(($"layers.{b}.gate", 704, 256));
            shapes.Add(($"layers.{b}.up", 704, 256));
            shapes.Add(($"layers.{b}.down", 256, 704));
        }
        return shapes.Select((s, i) =>
        {
            var layer = SyntheticLayer.Create(s.Item2, s.Item3, 2048, (ulong)i);
            return new PlanInput(s.Item1, layer.W.to(ScalarType.Float32), ModalityStatistics.FromMoments(s.Item1, layer.A, layer.G, layer.B), 1);
        }).ToList();
    }

    private static readonly Lazy<List<PlanInput>> Layers = new(ShapesVlmLikeLayers);

    [TestMethod]
    [DataRow(QuantizationMethod.GptqMixed, 2.25)]
    [DataRow(QuantizationMethod.GptqMixed, 3.0)]
    [DataRow(QuantizationMethod.Gptvq, 2.25)]
    [DataRow(QuantizationMethod.Gptvq, 2.5)]
    [DataRow(QuantizationMethod.Msavq, 2.0)]
    [DataRow(QuantizationMethod.Msavq, 2.25)]
    [DataRow(QuantizationMethod.Msavq, 3.0)]
    public void EveryMethod_MeetsTheRequestedBits_WithinAHundredth(QuantizationMethod method, double budget)
    {
        var plan = PlanBuilder.Build(Layers.Value, new SensitivityEstimator.Options { Method = method, TargetBitsPerWeight = budget });
        Assert.IsLessThanOrEqualTo(budget + 1e-9, plan.BitsPerWeight);
        Assert.IsGreaterThanOrEqualTo(budget - 0.01, plan.BitsPerWeight, $"{method} at ≤ {budget}: {plan.BitsPerWeight:F4} b/w planned");
    }

    /// <summary>GPTQ + allocator gives the layers different widths where that pays, and measures what it chose.</summary>
    [TestMethod]
    public void GptqAllocator_MixesWidthsOrGroups()
    {
        var plan = PlanBuilder.Build(Layers.Value, new SensitivityEstimator.Options { Method = QuantizationMethod.GptqMixed, TargetBitsPerWeight = 2.6 });
        Assert.IsGreaterThan(1, plan.Layers.Select(l => (l.Bits, l.GroupSize)).Distinct().Count());
    }

    private static (Tensor W, ModalityStatistics Stats) Synthetic(int m, int n, ulong seed)
    {
        var l = SyntheticLayer.Create(m, n, 4096, seed);
        return (l.W.to(ScalarType.Float32), ModalityStatistics.FromMoments("synthetic", l.A, l.G, l.B));
    }

    /// <summary>At equal bits (the uniform plan's own realized bits as the mixed plan's budget), mixing codebook sizes does not lose.</summary>
    [TestMethod]
    [DataRow(1UL)]
    [DataRow(2UL)]
    public void MixedPrecision_AtEqualBits_IsNoWorseThanUniform(ulong seed)
    {
        var (w, stats) = Synthetic(512, 512, seed);   // large enough that one tile's upgrade is a few thousandths of a bit
        using (stats)
        {
            var quantize = new MixedPrecisionVqEstimator.Options { KMeansIterations = 30 };
            using var uniform = LayerQuantizer.QuantizeOne("l", w, stats,
                new SensitivityEstimator.Options { Method = QuantizationMethod.Msavq, TargetBitsPerWeight = 2.25, MixedPrecision = false }, quantize);
            double bits = uniform.Report.BitsPerWeight;
            using var mixed = LayerQuantizer.QuantizeOne("l", w, stats,
                new SensitivityEstimator.Options { Method = QuantizationMethod.Msavq, TargetBitsPerWeight = bits }, quantize);
            Assert.AreEqual(bits, mixed.Report.BitsPerWeight, 0.01, "equal bits");
            Assert.IsLessThanOrEqualTo(uniform.Report.ProxyError, mixed.Report.ProxyError,
                $"mixed {mixed.Report.ProxyError:g4} vs uniform {uniform.Report.ProxyError:g4} at {bits:F3} b/w");
        }
    }

    /// <summary>
    /// BlockLDLQ (exact intra-vector feedback, full D_k metric) is no more than 2 % above GPTVQ (diagonal feedback) at
    /// the same layout, K and column order (both sweep first to last: on a given layer the order alone moved either by
    /// up to 20 %, so a comparison in different orders measures the order).
    /// </summary>
    [TestMethod]
    [DataRow(3UL, 2)]
    [DataRow(4UL, 4)]
    public void BlockLdlq_AtEqualBits_IsWithinTwoPercentOfGptvq(ulong seed, int d)
    {
        var l = SyntheticLayer.Create(128, 256, 4096, seed);
        var w = l.W.to(ScalarType.Float32);
        int k = d == 2 ? 16 : 256;
        var layout = new VqLayout(d, d == 2 ? 16 : 128, 64);
        var kmeans = new KMeansOptions { Iterations = 30 };
        using var gptvq = Gptvq.Quantize(w, l.A, new GptvqOptions
        {
            VectorDim = d, IndexBitsPerWeight = Math.Log2(k) / d, ColumnsPerGroup = layout.ColumnsPerGroup,
            WeightsPerCodebook = (long)layout.RowsPerGroup * layout.ColumnsPerGroup, KMeans = kmeans,
        });
        using var ldlq = BlockLdlq.Quantize(w, l.A, null, new BlockLdlqOptions { Layout = gptvq.Layout, CodebookSize = k, KMeans = kmeans, Forward = true });
        Assert.AreEqual(gptvq.Cost().BitsPerWeight, ldlq.Cost().BitsPerWeight, 1e-12, "the same layout and K: equal bits");
        double eV = HessianFactor.RelativeProxyError(w, gptvq.Dequantize(), l.A);
        double eL = HessianFactor.RelativeProxyError(w, ldlq.Dequantize(), l.A);
        Assert.IsLessThanOrEqualTo(1.02 * eV, eL, $"BlockLDLQ {eL:g4} vs GPTVQ {eV:g4}");
    }

    /// <summary>
    /// The chain's gradient shift works on the same (A, b) as its sweep, so it lowers the first- plus second-order
    /// loss model ⟨G,ΔW⟩ + ½tr(ΔW A ΔWᵀ diag b) that it claims to minimize (algorithm.md §6.1).
    /// </summary>
    [TestMethod]
    public void ChainGradientShift_LowersTheLossModelItClaims()
    {
        var l = SyntheticLayer.Create(64, 128, 4096, 5);
        var w = l.W.to(ScalarType.Float32);
        using var stats = ModalityStatistics.FromMoments("l", l.A, l.G, l.B);
        var plan = new SensitivityEstimator.Options { Method = QuantizationMethod.Msavq, TargetBitsPerWeight = 2.25 };
        double Loss(bool shift)
        {
            using var r = LayerQuantizer.QuantizeOne("l", w, stats, plan,
                new MixedPrecisionVqEstimator.Options { GradientShift = shift, Beta = 1, ShiftTrustRatio = 0, KMeansIterations = 30 });
            return HessianFactor.LossModel(w, r.Weight, l.A, l.G, l.B);
        }
        double plain = Loss(false), aware = Loss(true);
        Assert.IsLessThan(plain, aware, $"with the shift {aware:g4}, without {plain:g4}");
    }

    /// <summary>Bit accounting has one source: the bytes a .msavq file holds are the accounted bits, within the header and byte padding.</summary>
    [TestMethod]
    [DataRow(QuantizationMethod.Rtn)]
    [DataRow(QuantizationMethod.GptqMixed)]
    [DataRow(QuantizationMethod.Gptvq)]
    [DataRow(QuantizationMethod.Msavq)]
    public void BytesWritten_AreTheAccountedBits(QuantizationMethod method)
    {
        var layers = Layers.Value.Take(7).ToList();
        var plan = PlanBuilder.Build(layers, new SensitivityEstimator.Options { Method = method, TargetBitsPerWeight = 2.5 });
        var stored = layers.Select((l, i) =>
        {
            using var r = LayerQuantizer.Quantize(l.Weight, l.Statistics, plan.Layers[i], plan.Precision,
                new MixedPrecisionVqEstimator.Options { KMeansIterations = 5 });
            return r.Stored;
        }).ToList();
        var bytes = QuantizedModelFile.ToBytes(new QuantizedModel(method.ToString(), new Dictionary<string, string>(), stored));
        long header = 8 + (long)System.Buffers.Binary.BinaryPrimitives.ReadUInt64LittleEndian(bytes);
        double accounted = stored.Sum(l => l.Cost().TotalBits);
        double data = (bytes.Length - header) * 8.0;
        int blobs = stored.Sum(l => l.Kind == QuantizedKind.Scalar ? 3 : 4);
        Assert.IsLessThanOrEqualTo(accounted + 8 * blobs, data, $"{data} data bits vs {accounted} accounted");
        Assert.IsGreaterThanOrEqualTo(accounted, data, $"{data} data bits vs {accounted} accounted");
        Assert.AreEqual(plan.BitsPerWeight, stored.Sum(l => l.Cost().TotalBits) / stored.Sum(l => (double)l.Rows * l.Columns), 1e-9);
    }
}

/// <summary>k-means that stops when it has converged (issue 15): the proxy error stays within 1 % of 100 full iterations.</summary>
[TestClass]
public sealed class KMeansToleranceTests
{
    [TestMethod]
    [DataRow(2)]
    [DataRow(4)]
    public void Tolerance_MovesProxyErrorByAtMostOnePercent(int d)
    {
        var l = SyntheticLayer.Create(128, 256, 4096, 11);
        var w = l.W.to(ScalarType.Float32);
        var layout = new VqLayout(d, d == 2 ? 32 : 128, 64);
        double Error(double tolerance)
        {
            using var q = BlockLdlq.Quantize(w, l.A, l.B, new BlockLdlqOptions
            {
                Layout = layout, CodebookSize = d == 2 ? 16 : 256, KMeans = new KMeansOptions { Iterations = 100, Tolerance = tolerance },
            });
            return HessianFactor.RelativeProxyError(w, q.Dequantize(), l.A);
        }
        double full = Error(0), early = Error(new KMeansOptions().Tolerance);
        Assert.AreEqual(full, early, 0.01 * full, $"100 iterations {full:g5}, with the tolerance {early:g5}");
    }
}

/// <summary>Issue 19.3: an impossible codebook is refused with its cost named, before anything is allocated.</summary>
[TestClass]
public sealed class CodebookLimitTests
{
    [TestMethod]
    public void Gptvq_FourBitsAtVectorDim8_IsRefusedWithItsCost()
    {
        var w = randn(16, 64);
        var h = eye(64, dtype: ScalarType.Float64);
        var e = Assert.ThrowsExactly<ArgumentOutOfRangeException>(() =>
            Gptvq.Quantize(w, h, new GptvqOptions { VectorDim = 8, IndexBitsPerWeight = 4, ColumnsPerGroup = 64, WeightsPerCodebook = 1024 }));
        StringAssert.Contains(e.Message, "2^32");
        StringAssert.Contains(e.Message, "GiB");
    }
}
