using Google.Protobuf;
using Msavq.MLNet.Models.MiniLm;
using Msavq.MLNet.Models.Onnx;
using Onnx;
using static TorchSharp.torch;
using DataType = Onnx.TensorProto.Types.DataType;
using G = Msavq.MLNet.Tests.Models.OnnxGraphBuilder;

namespace Msavq.MLNet.Tests.Models;

/// <summary>What <see cref="OnnxModel.Load(byte[], OnnxTextOptions, OnnxLayerOptions?, Device?, string)"/> refuses, and how it says so: before any calibration work.</summary>
[TestClass]
public sealed class OnnxModelErrorTests
{
    [TestMethod]
    public void Load_TinyEncoder_Runs()
    {
        using var model = OnnxModel.Load(TinyOnnxEncoder.Build(), TinyOnnxEncoder.Text);
        Assert.AreEqual("dense", model.QuantizableLayers.Single().Name, "the attention MatMuls multiply activations: not Linears");
        using var scope = NewDisposeScope();
        Assert.AreEqual(TinyOnnxEncoder.Width, model.Embed(new[] { "the graph", "once" }).shape[1]);
    }

    [TestMethod]
    public void Load_UnsupportedOperator_NamesTheOperatorNodeAndOpset()
    {
        var e = Assert.ThrowsExactly<NotSupportedException>(() => OnnxModel.Load(TinyOnnxEncoder.Build("NonZero"), TinyOnnxEncoder.Text));
        foreach (var part in new[] { "node 'NonZero_3'", "NonZero", "opset 13", "Supported:", "MatMul", "Conv" }) StringAssert.Contains(e.Message, part);
    }

    [TestMethod]
    public void Load_UnsupportedAttribute_Opset_OrDomain_SaysWhich()
    {
        var attribute = Assert.ThrowsExactly<NotSupportedException>(() =>
            OnnxModel.Load(TinyOnnxEncoder.Build("Relu", 13, G.Int("alpha", 1)), TinyOnnxEncoder.Text));
        StringAssert.Contains(attribute.Message, "node 'Relu_3' (Relu, opset 13): attribute 'alpha' is not supported");
        var value = Assert.ThrowsExactly<NotSupportedException>(() =>
            OnnxModel.Load(TinyOnnxEncoder.Build("Gelu", 20, G.String("approximate", "sigmoid")), TinyOnnxEncoder.Text));
        StringAssert.Contains(value.Message, "approximate = 'sigmoid'");
        var opset = Assert.ThrowsExactly<NotSupportedException>(() => OnnxModel.Load(TinyOnnxEncoder.Build("Relu", 7), TinyOnnxEncoder.Text));
        StringAssert.Contains(opset.Message, "opset 7; opsets 8 to 21");
        var proto = ModelProto.Parser.ParseFrom(TinyOnnxEncoder.Build());
        proto.Graph.Node[3].Domain = "com.microsoft";
        var domain = Assert.ThrowsExactly<NotSupportedException>(() => OnnxModel.Load(proto.ToByteArray(), TinyOnnxEncoder.Text));
        StringAssert.Contains(domain.Message, "com.microsoft.Relu");
    }

    [TestMethod]
    public void Load_GraphInputWithoutConfiguredName_AndConfiguredNameWithoutInput_SayHowToFix()
    {
        var unfed = Assert.ThrowsExactly<ArgumentException>(() =>
            OnnxModel.Load(TinyOnnxEncoder.Build(), TinyOnnxEncoder.Text with { AttentionMaskName = "mask" }));
        StringAssert.Contains(unfed.Message, "graph input 'attention_mask' is fed by none of the text options");
        var missing = Assert.ThrowsExactly<ArgumentException>(() =>
            OnnxModel.Load(TinyOnnxEncoder.Build(), TinyOnnxEncoder.Text with { TokenTypeIdsName = "token_type_ids" }));
        StringAssert.Contains(missing.Message, "TokenTypeIdsName = 'token_type_ids', but 'last_hidden_state' reads no such graph input");
        StringAssert.Contains(missing.Message, "or to null if there is none");
        var output = Assert.ThrowsExactly<ArgumentException>(() =>
            OnnxModel.Load(TinyOnnxEncoder.Build(), TinyOnnxEncoder.Text with { OutputName = "pooler_output" }));
        StringAssert.Contains(output.Message, "no value 'pooler_output' to output; its outputs are 'last_hidden_state'");
    }

    [TestMethod]
    public void Load_NonConstantMatMulWeight_RequestedAsLayer_SaysWhy()
    {
        var e = Assert.ThrowsExactly<ArgumentException>(() =>
            OnnxModel.Load(TinyOnnxEncoder.Build(), TinyOnnxEncoder.Text, new OnnxLayerOptions { Layers = new[] { "MatMul_5" } }));
        StringAssert.Contains(e.Message, "'MatMul_5' cannot be quantized: MatMul_5 is not a Linear because its weight 'Transpose_4' is computed by node 'Transpose_4', not a constant");
        Assert.ThrowsExactly<ArgumentException>(() =>
            OnnxModel.Load(TinyOnnxEncoder.Build(), TinyOnnxEncoder.Text, new OnnxLayerOptions { Layers = new[] { "decoder" } }));
    }

    [TestMethod]
    public void Load_TruncatedFile_IsInvalidData_AtEveryCut()
    {
        var bytes = TinyOnnxEncoder.Build();
        for (int length = 0; length < bytes.Length; length++)
        {
            var cut = bytes[..length];
            Assert.ThrowsExactly<InvalidDataException>(() => OnnxGraph.Load(cut, "cut"), $"cut at {length} of {bytes.Length} bytes");
        }
        var onnx = MiniLmPackage.Read().Onnx;
        var e = Assert.ThrowsExactly<InvalidDataException>(() =>
            OnnxModel.Load(onnx[..(onnx.Length / 2)], TinyOnnxEncoder.Text, source: "half of model.onnx"));
        StringAssert.Contains(e.Message, "half of model.onnx is not a complete ONNX model (truncated, or not ONNX)");
    }

    /// <summary>
    /// An export that flattens tokens before a Gemm ([batch·tokens, n]) is calibrated per token; a layer after pooling
    /// ([batch, n]) cannot be, and loading says so unless it is left out.
    /// </summary>
    [TestMethod]
    public void Load_FlattenedLayerSeesTokens_PooledLayerIsRefusedUnlessLeftOut()
    {
        var (g, tokens) = TinyOnnxEncoder.FlattenedGemm(null, G.Int("transB", 1));
        int w = TinyOnnxEncoder.Width;
        var pooled = g.Node("ReduceMean", new[] { tokens }, null, G.Ints("axes", 1), G.Int("keepdims", 0));
        g.Node("MatMul", new[] { pooled, g.Initializer("head.weight", TinyOnnxEncoder.Values(w * 4, 0.5f), w, 4) }, "sentence_embedding");
        g.Output("sentence_embedding");
        var bytes = g.Bytes();
        var text = TinyOnnxEncoder.Text with { OutputName = "sentence_embedding", Pooling = Msavq.MLNet.Models.Text.SentencePooling.None, AttentionMaskName = null };

        var e = Assert.ThrowsExactly<NotSupportedException>(() => OnnxModel.Load(bytes, text));
        StringAssert.Contains(e.Message, "layer 'head' sees [2, 8]");
        using var model = OnnxModel.Load(bytes, text, new OnnxLayerOptions { NamePattern = "^flat$" });
        long[]? seen = null;
        var hook = model.QuantizableLayers.Single().Module.register_forward_hook((_, x, y) => { seen = x.shape; return y; });
        try
        {
            using var scope = NewDisposeScope();
            var (t, _) = model.Tokenize(new[] { "the graph", "once" });
            model.Embed(new[] { "the graph", "once" });
            CollectionAssert.AreEqual(new[] { t.shape[0], t.shape[1], w }, seen, "[batch·tokens, n] rows seen as [batch, tokens, n]");
        }
        finally { hook.remove(); }
    }
}
