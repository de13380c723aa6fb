using Microsoft.ML.OnnxRuntime;
using DenseTensor = Microsoft.ML.OnnxRuntime.Tensors.DenseTensor<long>;
using Msavq.MLNet.Data;
using Msavq.MLNet.Models;
using Msavq.MLNet.Models.MiniLm;
using static TorchSharp.torch;

namespace Msavq.MLNet.Tests.Models;

[TestClass]
public sealed class MiniLmTests
{
    private static MiniLmEncoder Model => SharedMiniLm.Model;

    [TestMethod]
    public void Embeddings_MatchOnnxRuntime_OnTheOriginalFile_On100Sentences()
    {
        var model = Model;   // built outside the dispose scopes below, or they would free its parameters
        var sentences = BrownCorpus.Evaluation.Take(100).ToList();
        var (onnx, _) = MiniLmPackage.Read();
        using var session = new InferenceSession(onnx);
        double worst = 0;
        for (int start = 0; start < sentences.Count; start += 25)
        {
            using var scope = NewDisposeScope();
            using var _ = no_grad();
            var (tokens, mask) = model.Tokenize(sentences.Skip(start).Take(25).ToList());
            var ours = model.Embed(tokens, mask);
            var reference = OnnxEmbeddings(session, tokens, mask);
            worst = Math.Max(worst, (ours - reference).abs().max().item<float>());
        }
        Console.WriteLine($"max |TorchSharp − ONNX Runtime| over 100 sentences = {worst:E2}");   // the figure the README quotes
        Assert.IsLessThanOrEqualTo(1e-4, worst, $"max |TorchSharp − ONNX Runtime| over 100 sentences = {worst:E2}");
    }

    /// <summary>ONNX Runtime's last_hidden_state, pooled the sentence-transformers way (mean over tokens, L2 norm).</summary>
    internal static Tensor OnnxEmbeddings(InferenceSession session, Tensor tokens, Tensor mask)
    {
        var dims = new[] { (int)tokens.shape[0], (int)tokens.shape[1] };
        var ids = tokens.data<long>().ToArray();
        var attention = mask.data<float>().Select(m => (long)m).ToArray();
        var inputs = new[]
        {
            NamedOnnxValue.CreateFromTensor("input_ids", new DenseTensor(ids, dims)),
            NamedOnnxValue.CreateFromTensor("attention_mask", new DenseTensor(attention, dims)),
            NamedOnnxValue.CreateFromTensor("token_type_ids", new DenseTensor(new long[ids.Length], dims)),
        };
        using var results = session.Run(inputs, new[] { "last_hidden_state" });
        var hidden = results.First().AsTensor<float>();
        var h = tensor(hidden.ToArray(), hidden.Dimensions.ToArray().Select(d => (long)d).ToArray());
        var m = mask.unsqueeze(2);
        return nn.functional.normalize((h * m).sum(1) / m.sum(1), p: 2, dim: 1);
    }

    [TestMethod]
    public void Tokenizer_IsBertUncasedWordPiece()
    {
        // [CLS] hello world [SEP] in the BERT uncased vocabulary; case folded as the model expects.
        CollectionAssert.AreEqual(new[] { 101, 7592, 2088, 102 }, Model.Tokenizer.EncodeToIds("Hello World").ToArray());
    }

    [TestMethod]
    public void QuantizableLayers_AreTheSixLinearsOfEachLayer_InGraphOrder_AndHooksSeeThemAll()
    {
        var layers = Model.QuantizableLayers;
        Assert.HasCount(36, layers);
        CollectionAssert.AreEqual(Enumerable.Range(0, 6).SelectMany(b => Enumerable.Repeat(b, 6)).ToArray(), layers.Select(l => l.Block).ToArray());
        Assert.IsTrue(layers.All(l => l.Role == LayerRole.Language));
        CollectionAssert.AreEqual(new long[] { 384, 384, 384, 384, 1536, 384 }, layers.Take(6).Select(l => l.Module.out_features).ToArray());
        var fired = new HashSet<string>();
        var hooks = layers.Select(l => l.Module.register_forward_hook((_, _, y) => { fired.Add(l.Name); return y; })).ToList();
        try
        {
            using var scope = NewDisposeScope();
            using var _ = no_grad();
            using var batch = Model.Encode(Pairs(2));
            Model.Logits(batch);
        }
        finally { foreach (var h in hooks) h.remove(); }
        CollectionAssert.AreEquivalent(layers.Select(l => l.Name).ToList(), fired.ToList());
    }

    [TestMethod]
    public void Encode_PairsEachTextWithItsNext_AndMarksEveryTokenText()
    {
        using var batch = Model.Encode(Pairs(3).Append(new ModelRow([], "A sentence without partner.")).ToList());
        CollectionAssert.AreEqual(new long[] { 1, 0, 3, 2, 5, 4, -100 }, batch.Labels.reshape(-1).data<long>().ToArray());
        Assert.AreEqual(7, batch.Count);
        Assert.IsTrue(batch.Modality.eq((byte)TokenModality.Text).all().item<bool>());
        Assert.AreEqual(batch.Tokens.ne(0).sum().item<long>(), (long)batch.Valid.sum().item<float>(), "valid = non-padding");
        Assert.ThrowsExactly<ArgumentException>(() => Model.Encode(new[] { new ModelRow(new byte[3], "x") }));
    }

    [TestMethod]
    public void ContrastiveObjective_HasNonZeroGradients_AtThePretrainedPoint()
    {
        using var model = Model.Clone();
        using var scope = NewDisposeScope();
        using var batch = model.Encode(Pairs(8));
        var logits = model.Logits(batch);
        var loss = nn.functional.cross_entropy(logits.reshape(-1, logits.shape[^1]), batch.Labels.reshape(-1));
        loss.backward();
        Assert.IsGreaterThan(0.0, loss.item<float>());
        foreach (var l in model.QuantizableLayers)
            Assert.IsGreaterThan(0.0, l.Module.weight.grad!.norm().item<float>(), $"{l.Name} has no gradient");
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

    [TestMethod]
    public void BrownCorpus_HasDisjointCalibrationAndEvaluationSentences()
    {
        Assert.IsGreaterThanOrEqualTo(1000, BrownCorpus.Calibration.Count);
        Assert.IsGreaterThanOrEqualTo(1000, BrownCorpus.Evaluation.Count);
        Assert.IsEmpty(BrownCorpus.Calibration.Intersect(BrownCorpus.Evaluation).ToList());
    }

    internal static List<ModelRow> Pairs(int count) => Enumerable.Range(0, count)
        .Select(k => new ModelRow([], BrownCorpus.Calibration[2 * k], BrownCorpus.Calibration[2 * k + 1])).ToList();
}

/// <summary>all-MiniLM-L6-v2 loaded once for the test run (parsing 90 MB of ONNX is the slow part).</summary>
internal static class SharedMiniLm
{
    private static readonly Lazy<MiniLmEncoder> Loaded = new(() => MiniLmEncoder.LoadPretrained());
    public static MiniLmEncoder Model => Loaded.Value;
}
