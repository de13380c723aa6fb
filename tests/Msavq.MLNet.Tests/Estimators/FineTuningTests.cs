using Microsoft.ML;
using Microsoft.ML.Data;
using Msavq.MLNet.Format;
using Msavq.MLNet.Tests.Models;

namespace Msavq.MLNet.Tests.Estimators;

/// <summary>Codebook fine-tuning (issue 13, item 5): codes fixed, codebooks trained on KL to the FP model.</summary>
[TestClass]
public sealed class FineTuningTests
{
    private static TransformerChain<MixedPrecisionVqTransformer> Fit(int steps, int seed = 0) =>
        TinyChain.Fit(new MLContext(0), QuantizationMethod.Msavq, 2.75, TinyVlm.Create(31), CalibrationMode.OneShot, seed,
            quantize: q => { q.FineTuneSteps = steps; q.FineTuneLearningRate = 1e-3; q.FineTuneBatchSize = 8; });

    [TestMethod]
    public void FineTuning_KeepsTheCodes_ChangesTheCodebooks_AndIsDeterministic()
    {
        using var plain = Fit(0);
        using var tuned = Fit(30);
        using var again = Fit(30);
        var p = plain.LastTransformer.Quantized.Layers;
        var t = tuned.LastTransformer.Quantized.Layers;
        Assert.HasCount(p.Count, t);
        for (int i = 0; i < p.Count; i++)
        {
            CollectionAssert.AreEqual(p[i].Codes, t[i].Codes, $"{p[i].Name}: the codes stay");
            Assert.AreEqual(p[i].Cost().TotalBits, t[i].Cost().TotalBits, "the bits stay");
        }
        Assert.IsTrue(Enumerable.Range(0, p.Count).Any(i => !p[i].Dequantize().SequenceEqual(t[i].Dequantize())),
            "some codebook moved (or the tuning was rejected as not lowering the calibration KL)");
        var bytes = QuantizedModelFile.ToBytes(tuned.LastTransformer.Quantized);
        CollectionAssert.AreEqual(bytes, QuantizedModelFile.ToBytes(again.LastTransformer.Quantized), "same seed, same file");
        // The network runs with exactly the stored (tuned) weights.
        var layer = tuned.LastTransformer.Model.QuantizableLayers.First(l => l.Name == t[0].Name);
        CollectionAssert.AreEqual(t[0].Dequantize(), layer.Module.weight!.cpu().data<float>().ToArray());
    }

    /// <summary>Fine-tuning belongs to MSAVQ: a GPTVQ fit with the option set is the plain GPTVQ fit.</summary>
    [TestMethod]
    public void Baselines_IgnoreFineTuning()
    {
        static byte[] Gptvq(int steps)
        {
            using var q = TinyChain.Fit(new MLContext(0), QuantizationMethod.Gptvq, 2.75, TinyVlm.Create(31), CalibrationMode.OneShot,
                quantize: o => o.FineTuneSteps = steps);
            return QuantizedModelFile.ToBytes(q.LastTransformer.Quantized);
        }
        CollectionAssert.AreEqual(Gptvq(0), Gptvq(30));
    }
}
