using Microsoft.ML.OnnxRuntime;
using Msavq.MLNet.Data;
using Msavq.MLNet.Models;
using Msavq.MLNet.Models.MiniLm;
using Msavq.MLNet.Models.Onnx;
using static TorchSharp.torch;

namespace Msavq.MLNet.Tests.Models;

/// <summary>all-MiniLM-L6-v2's published ONNX file through <see cref="OnnxModel"/>: parity, layers, objective.</summary>
[TestClass]
public sealed class OnnxModelTests
{
    private static OnnxModel Model => SharedOnnxMiniLm.Model;

    [TestMethod]
    public void MiniLm_Embeddings_MatchOnnxRuntime_On48Sentences()
    {
        var model = Model;   // built outside the dispose scopes below, or they would free its parameters
        var sentences = BrownCorpus.Evaluation.Skip(100).Take(48).ToList();
        using var session = new InferenceSession(MiniLmPackage.Read().Onnx);
        double worst = 0;
        for (int start = 0; start < sentences.Count; start += 16)
        {
            using var scope = NewDisposeScope();
            using var _ = no_grad();
            var (tokens, mask) = model.Tokenize(sentences.Skip(start).Take(16).ToList());
            var ours = model.Embed(tokens, mask);
            var reference = MiniLmTests.OnnxEmbeddings(session, tokens, mask);
            worst = Math.Max(worst, (ours - reference).abs().max().item<float>());
        }
        Console.WriteLine($"max |OnnxModel − ONNX Runtime| over 48 sentences = {worst:E2}");
        Assert.IsLessThanOrEqualTo(1e-4, worst, $"max |OnnxModel − ONNX Runtime| over 48 sentences = {worst:E2}");
    }

    [TestMethod]
    public void MiniLm_Embeddings_EqualMiniLmEncoders()
    {
        var (model, encoder) = (Model, SharedMiniLm.Model);
        using var scope = NewDisposeScope();
        using var _ = no_grad();
        var sentences = BrownCorpus.Evaluation.Take(32).ToList();
        double worst = (model.Embed(sentences) - encoder.Embed(sentences)).abs().max().item<float>();
        Console.WriteLine($"max |OnnxModel − MiniLmEncoder| over 32 sentences = {worst:E2}");
        Assert.IsLessThanOrEqualTo(1e-5, worst, $"max |OnnxModel − MiniLmEncoder| = {worst:E2}");
    }

    [TestMethod]
    public void MiniLm_QuantizableLayers_AreTheSixLinearsOfEachLayer_NamedByTheGraph_AndHooksSeeThemAll()
    {
        var layers = Model.QuantizableLayers;
        string[] kinds = { "attention.self.query", "attention.self.key", "attention.self.value", "attention.output.dense", "intermediate.dense", "output.dense" };
        CollectionAssert.AreEqual(Enumerable.Range(0, 6).SelectMany(b => kinds.Select(k => $"encoder.layer.{b}.{k}")).ToArray(),
            layers.Select(l => l.Name).ToArray(), "named after the folded biases: the exporter left the MatMul weights numbered");
        CollectionAssert.AreEqual(Enumerable.Range(0, 6).SelectMany(b => Enumerable.Repeat(b, 6)).ToArray(), layers.Select(l => l.Block).ToArray());
        Assert.IsTrue(layers.All(l => l.Role == LayerRole.Language && l.Module.bias is not null));
        // The same weights MiniLmEncoder reads by graph order, transposed into Linear layout.
        var encoder = SharedMiniLm.Model.QuantizableLayers;
        using (NewDisposeScope())
            for (int i = 0; i < layers.Count; i++)
                Assert.IsTrue(layers[i].Module.weight.eq(encoder[i].Module.weight).all().item<bool>(), layers[i].Name);
        Assert.IsFalse(Model.Graph.Graph.Linears.Any(c => c.Node.StartsWith("Gemm")), "the pooler does not lead to last_hidden_state: not run");
        var fired = new HashSet<string>();
        var hooks = layers.Select(l => l.Module.register_forward_hook((_, _, y) => { fired.Add(l.Name); return y; })).ToList();
        try
        {
            using var scope = NewDisposeScope();
            using var _ = no_grad();
            using var batch = Model.Encode(MiniLmTests.Pairs(2));
            Model.Logits(batch);
        }
        finally { foreach (var h in hooks) h.remove(); }
        CollectionAssert.AreEquivalent(layers.Select(l => l.Name).ToList(), fired.ToList());
    }

    [TestMethod]
    public void MiniLm_ObjectiveIsMiniLmEncoders_WithGradientsAtEveryLayer()
    {
        using var model = Model.Clone();
        using var scope = NewDisposeScope();
        var rows = MiniLmTests.Pairs(8);
        using var batch = model.Encode(rows);
        using var reference = SharedMiniLm.Model.Encode(rows);
        Assert.IsTrue(batch.Tokens.eq(reference.Tokens).all().item<bool>() && batch.Labels.eq(reference.Labels).all().item<bool>()
                      && batch.Valid.eq(reference.Valid).all().item<bool>() && batch.Modality.eq(reference.Modality).all().item<bool>());
        var logits = model.Logits(batch);
        using (no_grad())
            Assert.IsLessThan(1e-3, (logits - SharedMiniLm.Model.Logits(reference)).abs().max().item<float>(), "the same scaled cosines");
        var loss = nn.functional.cross_entropy(logits.reshape(-1, logits.shape[^1]), batch.Labels.reshape(-1));
        loss.backward();
        foreach (var l in model.QuantizableLayers)
            Assert.IsGreaterThan(0.0, l.Module.weight.grad!.norm().item<float>(), $"{l.Name} has no gradient: autograd runs through the graph");
    }

    [TestMethod]
    public void LayerOptions_SelectByPattern_BySize_OrByName()
    {
        var graph = Model.Graph.Graph;
        CollectionAssert.AreEqual(new[] { "query", "key", "value", "dense", "dense", "dense" },
            new OnnxLayerOptions { NamePattern = @"^encoder\.layer\.0\." }.Select(graph).Select(l => l.Name.Split('.')[^1]).ToArray());
        var large = new OnnxLayerOptions { MinimumWeights = 384 * 1536 }.Select(graph);
        Assert.HasCount(12, large);
        Assert.IsTrue(large.All(l => l.Name.EndsWith("intermediate.dense") || l.Name.EndsWith(".output.dense") && !l.Name.Contains("attention")));
        // By layer or node name; MatMul_34 is layer 0's query (its weight '927').
        var named = new OnnxLayerOptions { Layers = new[] { "encoder.layer.5.output.dense", "MatMul_34" } }.Select(graph);
        CollectionAssert.AreEqual(new[] { "encoder.layer.0.attention.self.query", "encoder.layer.5.output.dense" }, named.Select(l => l.Name).ToArray());
        Assert.AreEqual("927", named[0].Weight);
        Assert.ThrowsExactly<ArgumentException>(() => new OnnxLayerOptions { NamePattern = "decoder" }.Select(graph));
    }

    [TestMethod]
    public void Clone_IsDeep()
    {
        using var copy = Model.Clone();
        using var scope = NewDisposeScope();
        using var _ = no_grad();
        var sentences = BrownCorpus.Evaluation.Take(3).ToList();
        Assert.IsTrue(Model.Embed(sentences).allclose(copy.Embed(sentences)));
        copy.QuantizableLayers[0].Module.weight.zero_();
        Assert.IsGreaterThan(0.0, Model.QuantizableLayers[0].Module.weight.abs().sum().item<float>());
        Assert.IsFalse(Model.Embed(sentences).allclose(copy.Embed(sentences)));
    }
}

/// <summary>all-MiniLM-L6-v2's ONNX file as an <see cref="OnnxModel"/>, loaded once for the test run.</summary>
internal static class SharedOnnxMiniLm
{
    /// <summary>The model's text options: BERT uncased WordPiece, sentence-transformers' 256-token cut.</summary>
    public static OnnxTextOptions Text(byte[] vocabulary) =>
        OnnxTextOptions.Bert(vocabulary) with { MaxTokens = MiniLmConfig.AllMiniLmL6V2.MaxTokens };

    private static readonly Lazy<OnnxModel> Loaded = new(() =>
    {
        var (onnx, vocabulary) = MiniLmPackage.Read();
        return OnnxModel.Load(onnx, Text(vocabulary), source: MiniLmPackage.ModelResource);
    });
    public static OnnxModel Model => Loaded.Value;
}
