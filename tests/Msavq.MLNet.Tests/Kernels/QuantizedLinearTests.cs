using Microsoft.ML;
using Msavq.MLNet.Synthetic;
using Msavq.MLNet.Kernels;
using Msavq.MLNet.Models;
using Msavq.MLNet.Tests.Estimators;
using Msavq.MLNet.Tests.Models;
using static TorchSharp.torch;

namespace Msavq.MLNet.Tests.Kernels;

[TestClass]
public sealed class QuantizedLinearTests
{
    private static double RelativeError(Tensor a, Tensor b) =>
        (a.to(ScalarType.Float64) - b.to(ScalarType.Float64)).norm().item<double>() / b.to(ScalarType.Float64).norm().item<double>();

    [TestMethod]
    public void SmallAndLargeBatches_MatchALinearWithTheDecodedWeight()
    {
        using var scope = NewDisposeScope();
        var layer = SyntheticQuantizedLayer.Create(128, 256, 2, 64, 32, t => t % 2 == 0 ? 16 : 32, permuted: true, seed: 3);
        var bias = randn(128);
        var w = tensor(layer.Dequantize(), new long[] { 128, 256 });
        using var q = new QuantizedLinear(layer, bias);
        foreach (var shape in new[] { new long[] { 1, 256 }, new long[] { 2, 3, 256 }, new long[] { 4, 10, 256 } })
        {
            var x = randn(shape);
            var expected = nn.functional.linear(x, w, bias);
            var y = q.call(x);
            CollectionAssert.AreEqual(expected.shape, y.shape);
            long rows = x.numel() / 256;
            // ≤ 8 rows: int8 look-up tables; more: decoded slabs and matmul (float rounding only).
            Assert.IsLessThan(rows <= 8 ? 0.02 : 1e-5, RelativeError(y, expected), $"rows {rows}");
        }
    }

    [TestMethod]
    public void WrongInputWidth_IsRejected()
    {
        var layer = SyntheticQuantizedLayer.Create(64, 64, 2, 32, 32, _ => 16, seed: 1);
        using var q = new QuantizedLinear(layer, null);
        StringAssert.Contains(Assert.Throws<ArgumentException>(() => q.call(zeros(1, 32))).Message, "64 expected");
        Assert.Throws<ArgumentException>(() => new QuantizedLinear(layer, zeros(3)));
    }

    [TestMethod]
    public void ShapesVlm_WithLookupKernels_AnswersAsWithDecodedWeights()
    {
        var ml = new MLContext(0);
        var q = TinyChain.Fit(ml, QuantizationMethod.Msavq, 2.75, TinyVlm.Create(21), CalibrationMode.OneShot).LastTransformer;
        var decoded = (ShapesVlm)q.Model;
        using var _ = no_grad();
        using var batch = decoded.Encode(TinyVlm.Rows(6, seed: 5, withAnswers: false));
        var reference = decoded.AnswerLogits(batch);

        // Every call through the look-up kernel (rows per call far above 8), with exact float tables.
        var exact = decoded.Clone();
        Assert.AreEqual(q.Quantized.Layers.Count, exact.UseLookupKernels(q.Quantized, new LutKernelOptions { ExactLookups = true }, smallBatchRows: int.MaxValue));
        Assert.IsFalse(exact.QuantizableLayers.Any(l => q.Quantized.Layers.Any(s => s.Name == l.Name)));
        Assert.IsLessThan(1e-5, RelativeError(exact.AnswerLogits(batch), reference));

        // int8 tables, and the default split (these calls have more than 8 rows: decoded slabs).
        var int8 = decoded.Clone();
        int8.UseLookupKernels(q.Quantized, smallBatchRows: int.MaxValue);
        Assert.IsLessThan(0.02, RelativeError(int8.AnswerLogits(batch), reference));
        var mixed = decoded.Clone();
        mixed.UseLookupKernels(q.Quantized, smallBatchRows: int.MaxValue, exactLayers: q.Quantized.Layers.Select(l => l.Name));
        Assert.IsLessThan(1e-5, RelativeError(mixed.AnswerLogits(batch), reference));
        Assert.Throws<ArgumentException>(() => decoded.Clone().UseLookupKernels(q.Quantized, exactLayers: new[] { "no.such.layer" }));
        var slabs = decoded.Clone();
        slabs.UseLookupKernels(q.Quantized);
        Assert.IsLessThan(1e-5, RelativeError(slabs.AnswerLogits(batch), reference));
        Assert.Throws<InvalidOperationException>(() => slabs.Clone());
    }
}
