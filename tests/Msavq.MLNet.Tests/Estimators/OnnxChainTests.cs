using Microsoft.ML;
using Msavq.MLNet.Calibration;
using Msavq.MLNet.Sensitivity;
using Msavq.MLNet.Data;
using Msavq.MLNet.Models.Onnx;
using Msavq.MLNet.Tests.Models;
using static TorchSharp.torch;

namespace Msavq.MLNet.Tests.Estimators;

[TestClass]
public sealed class OnnxChainTests
{
    /// <summary>
    /// all-MiniLM-L6-v2 from its ONNX file, the four attention Linears of its first layer quantized by the chain a user
    /// writes (the whole model would take many minutes on a test machine; block 0's six layers took 4 on a busy one).
    /// </summary>
    [TestMethod]
    public void Chain_QuantizesOnnxMiniLm_EndToEnd_AndEmbeddingsStayClose()
    {
        var ml = new MLContext(seed: 0);
        var model = SharedOnnxMiniLm.Model;
        var attention = model.QuantizableLayers.Where(l => l.Block == 0 && l.Name.Contains(".attention.")).Select(l => l.Name).ToArray();
        Assert.HasCount(4, attention);
        IDataView pairs = BrownCorpus.CalibrationPairs(ml, sentences: 8);
        var chain = ml.Msavq().CollectCalibration(new CalibrationCollector.Options
            {
                Model = model, ImageColumnName = null, TextColumnName = BrownCorpus.TextColumn, AnswerColumnName = BrownCorpus.NextColumn,
                LayerNames = attention, BatchSize = 8,
            })
            .Append(ml.Msavq().EstimateSensitivity(targetBitsPerWeight: 3.0))
            .Append(ml.Msavq().QuantizeMixedPrecisionVq(new MixedPrecisionVqEstimator.Options { ScoreRows = false, FineTuneSteps = 0, KMeansIterations = 4 }))
            .Fit(pairs);
        var quantizer = chain.LastTransformer;
        CollectionAssert.AreEquivalent(attention, quantizer.Layers.Select(l => l.Layer).ToArray());
        Assert.IsLessThanOrEqualTo(3.0 + 1e-9, quantizer.BitsPerWeight);

        using var quantized = (OnnxModel)quantizer.Model;
        using var scope = NewDisposeScope();
        using var _ = no_grad();
        Assert.IsFalse(quantized.QuantizableLayers[0].Module.weight.eq(model.QuantizableLayers[0].Module.weight).all().item<bool>());
        Assert.IsTrue(quantized.QuantizableLayers[6].Module.weight.eq(model.QuantizableLayers[6].Module.weight).all().item<bool>(),
            "layers outside the plan stay as they were");
        var sentences = BrownCorpus.Evaluation.Take(8).ToList();
        double cosine = (quantized.Embed(sentences) * model.Embed(sentences)).sum(1).min().item<float>();
        Console.WriteLine($"3 bits/weight, layer 0's attention: worst cosine to FP over 8 sentences = {cosine:F3}");
        Assert.IsGreaterThan(0.9, cosine, "four layers at 3 bits keep the embeddings close");

        // Out as ONNX: ONNX Runtime runs the export and gives the quantized model's embeddings (issue 14, 4a).
        using var session = new Microsoft.ML.OnnxRuntime.InferenceSession(quantized.ToOnnx());
        var (tokens, mask) = quantized.Tokenize(sentences);
        double worst = (MiniLmTests.OnnxEmbeddings(session, tokens, mask) - quantized.Embed(tokens, mask)).abs().max().item<float>();
        Console.WriteLine($"max |ONNX Runtime(export) − quantized OnnxModel| over 8 sentences = {worst:E2}");
        Assert.IsLessThanOrEqualTo(1e-4, worst, $"max |ONNX Runtime(export) − quantized OnnxModel| = {worst:E2}");
    }

    /// <summary>GPTQ through the same chain, written back with its layers as MatMulNBits: ONNX Runtime runs the small file as the float one.</summary>
    [TestMethod]
    public void Chain_GptqOnOnnxMiniLm_ExportsMatMulNBits_ThatOnnxRuntimeRuns()
    {
        var ml = new MLContext(seed: 0);
        var model = SharedOnnxMiniLm.Model;
        var attention = model.QuantizableLayers.Where(l => l.Block == 0 && l.Name.Contains(".attention.")).Select(l => l.Name).ToArray();
        IDataView pairs = BrownCorpus.CalibrationPairs(ml, sentences: 8);
        var chain = ml.Msavq().CollectCalibration(new CalibrationCollector.Options
            {
                Model = model, ImageColumnName = null, TextColumnName = BrownCorpus.TextColumn, AnswerColumnName = BrownCorpus.NextColumn,
                LayerNames = attention, BatchSize = 8,
            })
            .Append(ml.Msavq().EstimateSensitivity(new SensitivityEstimator.Options { Method = QuantizationMethod.Gptq, TargetBitsPerWeight = 2.2 }))
            .Append(ml.Msavq().QuantizeMixedPrecisionVq(new MixedPrecisionVqEstimator.Options { ScoreRows = false }))
            .Fit(pairs);
        var quantizer = chain.LastTransformer;
        using var quantized = (OnnxModel)quantizer.Model;
        var small = quantized.ToOnnx(quantizer.Quantized.Layers, out var packed);
        var full = quantized.ToOnnx();
        CollectionAssert.AreEquivalent(attention, packed.ToArray(), "every 2-bit GPTQ layer (groups of 128) is packed");
        long saved = 4L * 384 * 384 * 4;   // four float32 384×384 weights
        Console.WriteLine($"float32 export {full.Length:N0} bytes, MatMulNBits export {small.Length:N0} bytes");
        Assert.IsLessThan(full.Length - saved * 9 / 10, small.Length, "the packed file is not smaller by about the four float weights");

        using var scope = NewDisposeScope();
        using var _ = no_grad();
        var (tokens, mask) = quantized.Tokenize(BrownCorpus.Evaluation.Take(8).ToList());
        using var viaFloat = new Microsoft.ML.OnnxRuntime.InferenceSession(full);
        using var viaNBits = new Microsoft.ML.OnnxRuntime.InferenceSession(small);
        double worst = (MiniLmTests.OnnxEmbeddings(viaNBits, tokens, mask) - MiniLmTests.OnnxEmbeddings(viaFloat, tokens, mask)).abs().max().item<float>();
        Console.WriteLine($"max |MatMulNBits export − float32 export| over 8 sentences = {worst:E2}");
        Assert.IsLessThanOrEqualTo(1e-5, worst, $"max |MatMulNBits export − float32 export| = {worst:E2}");
    }
}
