using Microsoft.ML;
using TorchSharp;
using Microsoft.ML.Data;
using Microsoft.ML.OnnxRuntime;
using Microsoft.ML.OnnxRuntime.Tensors;
using Msavq.MLNet.Models.Onnx;
using static TorchSharp.torch;
using Tensor = TorchSharp.torch.Tensor;
using DataType = Onnx.TensorProto.Types.DataType;
using G = Msavq.MLNet.Tests.Models.OnnxGraphBuilder;

namespace Msavq.MLNet.Tests.Models;

/// <summary><see cref="OnnxModel.ToOnnx"/>: the graph written back with the model's (quantized) weights, run by ONNX Runtime and ML.NET.</summary>
[TestClass]
public sealed class OnnxExportTests
{
    /// <summary>Rounds every Linear's weight to multiples of 1/8: a stand-in for quantization that changes every weight.</summary>
    private static void Coarsen(OnnxModel model)
    {
        using var _ = no_grad();
        using var eight = 8.ToScalar();
        foreach (var l in model.QuantizableLayers) l.Module.weight!.copy_(l.Module.weight.mul(eight).round().div(eight));
    }

    private static float[] OnnxRuntimeHidden(byte[] onnx, Tensor tokens, Tensor mask, string output = "last_hidden_state", bool withMask = true)
    {
        var dims = new[] { (int)tokens.shape[0], (int)tokens.shape[1] };
        var inputs = new List<NamedOnnxValue> { NamedOnnxValue.CreateFromTensor("input_ids", new DenseTensor<long>(tokens.data<long>().ToArray(), dims)) };
        if (withMask)
            inputs.Add(NamedOnnxValue.CreateFromTensor("attention_mask", new DenseTensor<long>(mask.data<float>().Select(m => (long)m).ToArray(), dims)));
        using var session = new InferenceSession(onnx);
        using var results = session.Run(inputs);
        return results.First(r => r.Name == output).AsTensor<float>().ToArray();
    }

    private static double MaxAbs(float[] a, Tensor b)
    {
        var bs = b.contiguous().data<float>().ToArray();
        Assert.HasCount(bs.Length, a);
        return a.Zip(bs, (x, y) => (double)Math.Abs(x - y)).Max();
    }

    [TestMethod]
    public void Export_CarriesTheModelsWeights_BitForBit_AndOnnxRuntimeAgrees()
    {
        var original = TinyOnnxEncoder.Build();
        using var model = OnnxModel.Load(original, TinyOnnxEncoder.Text);
        Coarsen(model);
        var exported = model.ToOnnx();
        using var reloaded = OnnxModel.Load(exported, TinyOnnxEncoder.Text);
        for (int i = 0; i < model.QuantizableLayers.Count; i++)
            Assert.IsTrue(reloaded.QuantizableLayers[i].Module.weight!.eq(model.QuantizableLayers[i].Module.weight!).all().item<bool>(),
                $"layer {model.QuantizableLayers[i].Name}: the exported weight is not the model's");

        using var scope = NewDisposeScope();
        using var _ = no_grad();
        var (tokens, mask) = model.Tokenize(new[] { "Loading checks the graph.", "Once." });
        var ours = model.Hidden(tokens, mask);
        double worst = MaxAbs(OnnxRuntimeHidden(exported, tokens, mask), ours);
        Assert.IsLessThanOrEqualTo(1e-5, worst, $"max |ONNX Runtime(export) − OnnxModel| = {worst:E2}");
        // The original file still gives the original outputs: the export changed the weights, nothing else.
        Assert.IsGreaterThan(1e-3, MaxAbs(OnnxRuntimeHidden(original, tokens, mask), ours), "the coarsened weights made no difference");
    }

    [TestMethod]
    public void Export_OfAGemmWithAlphaAndBeta_FoldsThemIntoTheWrittenWeightAndBias()
    {
        var (g, _) = TinyOnnxEncoder.FlattenedGemm("last_hidden_state", G.Float("alpha", 0.5f), G.Float("beta", 2f));
        g.Output("last_hidden_state");
        var text = TinyOnnxEncoder.Text with { AttentionMaskName = null };
        using var model = OnnxModel.Load(g.Bytes(), text);
        Coarsen(model);
        var exported = model.ToOnnx();

        using var scope = NewDisposeScope();
        using var _ = no_grad();
        var (tokens, mask) = model.Tokenize(new[] { "the graph once", "checks" });
        double worst = MaxAbs(OnnxRuntimeHidden(exported, tokens, mask, withMask: false), model.Hidden(tokens, mask));
        Assert.IsLessThanOrEqualTo(1e-5, worst, $"max |ONNX Runtime(export) − OnnxModel| = {worst:E2}");
    }

    private sealed class Tokens
    {
        public long[] input_ids { get; set; } = Array.Empty<long>();
        public long[] attention_mask { get; set; } = Array.Empty<long>();
    }

    private sealed class Hidden
    {
        public float[] last_hidden_state { get; set; } = Array.Empty<float>();
    }

    [TestMethod]
    public void SavedExport_RunsInAnMLNetPipeline_ThroughApplyOnnxModel()
    {
        using var model = OnnxModel.Load(TinyOnnxEncoder.Build(), TinyOnnxEncoder.Text);
        Coarsen(model);
        string folder = Path.Combine(Path.GetTempPath(), $"msavq-export-{Guid.NewGuid():N}");
        string path = Path.Combine(folder, "quantized.onnx");
        try
        {
            model.SaveOnnx(path);
            using var scope = NewDisposeScope();
            using var _ = no_grad();
            var (tokens, mask) = model.Tokenize(new[] { "Loading checks the graph." });
            int t = (int)tokens.shape[1];
            var ml = new MLContext(seed: 0);
            var schema = SchemaDefinition.Create(typeof(Tokens));
            schema[nameof(Tokens.input_ids)].ColumnType = new VectorDataViewType(NumberDataViewType.Int64, 1, t);
            schema[nameof(Tokens.attention_mask)].ColumnType = new VectorDataViewType(NumberDataViewType.Int64, 1, t);
            var row = new Tokens { input_ids = tokens.data<long>().ToArray(), attention_mask = mask.data<float>().Select(m => (long)m).ToArray() };
            var data = ml.Data.LoadFromEnumerable(new[] { row }, schema);
            var shapes = new Dictionary<string, int[]> { ["input_ids"] = new[] { 1, t }, ["attention_mask"] = new[] { 1, t } };
            var pipeline = ml.Transforms.ApplyOnnxModel(new[] { "last_hidden_state" }, new[] { "input_ids", "attention_mask" }, path, shapes, gpuDeviceId: null, fallbackToCpu: false, recursionLimit: 100);
            var output = ml.Data.CreateEnumerable<Hidden>(pipeline.Fit(data).Transform(data), reuseRowObject: false).Single();
            double worst = MaxAbs(output.last_hidden_state, model.Hidden(tokens, mask));
            Assert.IsLessThanOrEqualTo(1e-5, worst, $"max |ApplyOnnxModel(export) − OnnxModel| = {worst:E2}");
        }
        finally
        {
            if (Directory.Exists(folder)) Directory.Delete(folder, recursive: true);
        }
    }

    [TestMethod]
    public void SaveOnnx_ToAFolderPath_FailsBeforeWriting()
    {
        using var model = OnnxModel.Load(TinyOnnxEncoder.Build(), TinyOnnxEncoder.Text);
        var e = Assert.ThrowsExactly<IOException>(() => model.SaveOnnx(Path.GetTempPath()));
        StringAssert.Contains(e.Message, "is a folder");
    }
}
