using Msavq.MLNet.Models;
using TorchSharp;
using static TorchSharp.torch;

namespace Msavq.MLNet.Tests.Models;

[TestClass]
public sealed class ShapesVlmTests
{
    [TestMethod]
    public void Forward_HasTheExpectedShapes()
    {
        using var model = TinyVlm.Create();
        var rows = TinyVlm.Rows(5);
        using var batch = model.Encode(rows);
        using var scope = NewDisposeScope();
        long t = batch.Tokens.shape[1], p = model.Config.ImageTokens;
        CollectionAssert.AreEqual(new long[] { 5, 3, 32, 32 }, batch.Pixels.shape);
        CollectionAssert.AreEqual(new long[] { 5, p, TinyVlm.Config.VisionWidth }, model.EncodeImage(batch.Pixels).shape);
        var logits = model.call(batch.Pixels, batch.Tokens);
        CollectionAssert.AreEqual(new long[] { 5, t + p, model.Config.Vocabulary.Count }, logits.shape);
        CollectionAssert.AreEqual(new long[] { 5, model.Config.Vocabulary.Count }, model.AnswerLogits(batch).shape);
        Assert.AreEqual(0, model.Loss(batch).shape.Length);
    }

    [TestMethod]
    public void Encode_MarksModalitiesAndPutsLabelsOnAnswerTokensOnly()
    {
        using var model = TinyVlm.Create();
        var rows = TinyVlm.Rows(3);
        using var batch = model.Encode(rows);
        var modality = batch.Modality.data<byte>().ToArray();
        var labels = batch.Labels.data<long>().ToArray();
        long l = batch.Labels.shape[1];
        int p = model.Config.ImageTokens;
        for (int i = 0; i < 3; i++)
        {
            Assert.AreEqual((byte)TokenModality.Text, modality[i * l]);
            for (int k = 1; k <= p; k++) Assert.AreEqual((byte)TokenModality.Image, modality[i * l + k]);
            var labelled = Enumerable.Range(0, (int)l).Where(j => labels[i * l + j] != -100).ToList();
            Assert.HasCount(1, labelled, "single-token answers");
            Assert.AreEqual(batch.AnswerPositions[i], labelled[0]);
            Assert.AreEqual((byte)TokenModality.Answer, modality[i * l + labelled[0] + 1]);
            Assert.AreEqual(rows[i].Target, model.Tokenizer.Decode((int)labels[i * l + labelled[0]]));
        }
    }

    [TestMethod]
    public void Predict_DoesNotDependOnTheAnswerTokens()
    {
        using var model = TinyVlm.Create();
        using var with = model.Encode(TinyVlm.Rows(4));
        using var without = model.Encode(TinyVlm.Rows(4, withAnswers: false));
        using var a = model.AnswerLogits(with);
        using var b = model.AnswerLogits(without);
        Assert.IsTrue(a.allclose(b, rtol: 1e-5, atol: 1e-6), "causal attention: the answer cannot leak into its own prediction");
    }

    [TestMethod]
    public void QuantizableLayers_CoverEveryLinearButTheHead_AndHooksSeeThemAll()
    {
        using var model = TinyVlm.Create();
        var layers = model.QuantizableLayers;
        int linears = model.named_modules().Count(m => m.module is TorchSharp.Modules.Linear);
        Assert.AreEqual(linears - 1, layers.Count);
        Assert.IsFalse(layers.Any(l => l.Name == "lm_head"));
        CollectionAssert.IsSubsetOf(
            new[] { "vision.blocks.0.attn.q_proj", "projector.fc1", "layers.1.self_attn.o_proj", "layers.1.down_proj" },
            layers.Select(l => l.Name).ToList());
        // Blocks: vision blocks, then the projector, then decoder blocks, in forward order.
        CollectionAssert.AreEqual(layers.Select(l => l.Block).OrderBy(b => b).ToList(), layers.Select(l => l.Block).ToList());

        var fired = new HashSet<string>();
        var handles = layers.Select(l => l.Module.register_forward_hook((_, _, y) => { fired.Add(l.Name); return y; })).ToList();
        using (var batch = model.Encode(TinyVlm.Rows(2)))
        using (var scope = NewDisposeScope())
            model.Loss(batch);
        foreach (var h in handles) h.remove();
        CollectionAssert.AreEquivalent(layers.Select(l => l.Name).ToList(), fired.ToList());
    }

    [TestMethod]
    public void Encode_RejectsAWrongImageSize()
    {
        using var model = TinyVlm.Create();
        var e = Assert.ThrowsExactly<ArgumentException>(() => model.Encode(new[] { new ModelRow(new byte[10], "is there a red circle?") }));
        StringAssert.Contains(e.Message, "3072");
    }

    [TestMethod]
    public void Initialize_GivesEveryWeightMatrixASpread()
    {
        // Pins a TorchSharp trap: trunc_normal_ with absolute bounds left weights at zero and the model constant.
        using var model = TinyVlm.Create();
        foreach (var (name, p) in model.named_parameters())
        {
            if (p.shape.Length < 2 && name != "pos_embed") continue;
            double std = p.std().item<float>();
            Assert.IsTrue(std > 1e-3 && std < 1.0, $"{name}: std {std}");
        }
    }

    [TestMethod]
    public void Forward_DependsOnTheImageAndTheQuestion()
    {
        using var model = TinyVlm.Create();
        using var batch = model.Encode(TinyVlm.Rows(6));
        using var logits = model.AnswerLogits(batch);
        Assert.IsGreaterThan(1e-4, logits.std(new long[] { 0 }).mean().item<float>());
    }

    [TestMethod]
    public void DefaultConfig_IsInTheIssueSizeRange()
    {
        using var model = new ShapesVlm(new ShapesVlmConfig());
        long n = model.parameters().Sum(p => p.numel());
        Assert.IsTrue(n is >= 5_000_000 and <= 20_000_000, $"{n} parameters");
        foreach (var l in model.QuantizableLayers.Where(l => l.Name.StartsWith("layers.", StringComparison.Ordinal)))
            Assert.IsTrue(l.Module.in_features >= 256 && l.Module.out_features >= 256, l.Name);
    }
}
