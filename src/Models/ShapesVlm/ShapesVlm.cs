using System.Reflection;
using Msavq.MLNet.Kernels;
using Msavq.MLNet.Models.Layers;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;
using F = TorchSharp.torch.nn.functional;

namespace Msavq.MLNet.Models;

/// <summary>
/// The reference VLM, LLaVA-shaped: ViT image encoder → projector MLP → decoder-only language model over
/// [bos; image tokens; question tokens; answer tokens], answering by next-token prediction through lm_head.
/// Every Linear is invoked with <c>call()</c>, so forward hooks see it. The network is here; turning rows into a
/// batch is in ShapesVlm.Batching.cs and running stored layers on look-up kernels in ShapesVlm.Kernels.cs. The
/// tapped <see cref="DecodeHidden(Tensor, Tensor, IReadOnlyList{int})"/> is the forward pass itself with the residual
/// stream exposed (what the training probes read), so it stays with the network.
/// </summary>
public sealed partial class ShapesVlm : nn.Module<Tensor, Tensor, Tensor>, IVqaModel, IPersistableModel, ISupportsLookupKernels
{
    private readonly VisionEncoder vision;
    private readonly Projector projector;
    private readonly Embedding embed_tokens;
    private readonly Parameter pos_embed;
    private readonly Parameter? image_rows, image_cols;
    private readonly ModuleList<DecoderBlock> layers;
    private readonly RmsNorm norm;
    private readonly Linear lm_head;
    private IReadOnlyList<QuantizableLayer>? _quantizable;
    private int _lookupLayers;

    public const string PretrainedResource = "Msavq.MLNet.Models.Pretrained.shapes-vlm.ckpt";

    /// <exception cref="ArgumentException">A field of <paramref name="config"/> is out of range (<see cref="ShapesVlmConfig.Validate"/>).</exception>
    public ShapesVlm(ShapesVlmConfig config) : base("ShapesVlm")
    {
        ArgumentNullException.ThrowIfNull(config);
        config.Validate();
        Config = config;
        Tokenizer = new ShapesTokenizer(config.Vocabulary);
        vision = new VisionEncoder("vision", config);
        projector = new Projector("projector", config.VisionWidth, config.TextWidth);
        embed_tokens = nn.Embedding(config.Vocabulary.Count, config.TextWidth);
        pos_embed = nn.Parameter(zeros(1, config.MaxSequence, config.TextWidth));
        if (config.ImageGridPositions)
        {
            int grid = config.ImageSize / config.PatchSize;
            image_rows = nn.Parameter(zeros(grid, config.TextWidth));
            image_cols = nn.Parameter(zeros(grid, config.TextWidth));
        }
        layers = nn.ModuleList(Enumerable.Range(0, config.TextLayers)
            .Select(i => new DecoderBlock($"{i}", config.TextWidth, config.TextHeads, config.TextMlp)).ToArray());
        norm = new RmsNorm("norm", config.TextWidth);
        lm_head = nn.Linear(config.TextWidth, config.Vocabulary.Count, hasBias: false);
        RegisterComponents();
        Initialize();
    }

    public ShapesVlmConfig Config { get; }
    public ShapesTokenizer Tokenizer { get; }
    public Device Device => pos_embed.device;

    /// <summary>Loads the checkpoint shipped inside this assembly (trained with <c>msavq train</c>).</summary>
    public static ShapesVlm LoadPretrained(Device? device = null)
    {
        using var stream = typeof(ShapesVlm).Assembly.GetManifestResourceStream(PretrainedResource)
            ?? throw new FileNotFoundException(
                $"The pretrained ShapesVlm checkpoint is not embedded in {typeof(ShapesVlm).Assembly.GetName().Name} " +
                $"(resource '{PretrainedResource}'). Train one with 'msavq train' and rebuild.");
        var model = ShapesVlmCheckpoint.Load(stream, $"embedded resource {PretrainedResource}");
        if (device != null) model.to(device);
        return model;
    }

    /// <summary>Image encoder output, [B, image tokens, VisionWidth].</summary>
    public Tensor EncodeImage(Tensor pixels) => vision.call(pixels);

    /// <summary>Logits [B, L, vocabulary] for pixels [B,3,H,W] and text ids [B,T].</summary>
    public override Tensor forward(Tensor pixels, Tensor tokens) => Decode(vision.call(pixels), tokens);

    /// <summary>The language-model half: projector + decoder over precomputed image features → logits.</summary>
    public Tensor Decode(Tensor imageFeatures, Tensor tokens)
    {
        using var scope = NewDisposeScope();
        return lm_head.call(DecodeHidden(imageFeatures, tokens)).MoveToOuterDisposeScope();
    }

    /// <summary>Final normalized hidden states [B, L, TextWidth] (what lm_head reads).</summary>
    public Tensor DecodeHidden(Tensor imageFeatures, Tensor tokens) => DecodeHidden(imageFeatures, tokens, Array.Empty<int>()).Final;

    /// <summary>Final hidden states, and the residual stream after each decoder block in <paramref name="tapAfterBlocks"/> (training probes).</summary>
    public (Tensor Final, Tensor[] Taps) DecodeHidden(Tensor imageFeatures, Tensor tokens, IReadOnlyList<int> tapAfterBlocks)
    {
        using var scope = NewDisposeScope();
        using var one = 1.ToScalar();   // the alpha of a + b, explicit as in RmsNorm
        var image = projector.call(imageFeatures);
        if (image_rows is not null && image_cols is not null)
        {
            // Row + column of each image token (row-major, as the encoder emits them).
            long g = image_rows.shape[0];
            image = image.add(image_rows.unsqueeze(1).add(image_cols.unsqueeze(0), one).reshape(g * g, -1), one);
        }
        var text = embed_tokens.call(tokens);
        var x = cat(new[] { text[.., ..1], image, text[.., 1..] }, 1);
        long l = x.shape[1];
        if (l > Config.MaxSequence)
            throw new ArgumentException($"Sequence of {l} positions exceeds the model's {Config.MaxSequence}.");
        x = x.add(pos_embed[.., ..(int)l], one);
        var taps = new Tensor?[tapAfterBlocks.Count];
        int i = 0;
        foreach (var block in layers)
        {
            x = block.call(x);
            for (int t = 0; t < taps.Length; t++) if (tapAfterBlocks[t] == i) taps[t] = x;
            i++;
        }
        if (taps.Any(t => t is null)) throw new ArgumentOutOfRangeException(nameof(tapAfterBlocks), $"The decoder has blocks 0..{i - 1}.");
        var final = norm.call(x).MoveToOuterDisposeScope();
        return (final, taps.Select(t => t!.MoveToOuterDisposeScope()).ToArray());
    }

    /// <summary>lm_head over hidden states.</summary>
    public Tensor Head(Tensor hidden) => lm_head.call(hidden);

    public IReadOnlyList<QuantizableLayer> QuantizableLayers => _quantizable ??= ListLayers();

    private IReadOnlyList<QuantizableLayer> ListLayers()
    {
        int v = Config.VisionLayers;
        var list = new List<QuantizableLayer>();
        foreach (var (name, module) in named_modules())
        {
            if (module is not Linear linear || name == "lm_head") continue;
            string[] parts = name.Split('.');
            var (block, role) = parts[0] switch
            {
                "vision" => (int.Parse(parts[2]), LayerRole.Vision),
                "projector" => (v, LayerRole.Projector),
                "layers" => (v + 1 + int.Parse(parts[1]), LayerRole.Language),
                _ => throw new InvalidOperationException($"Unexpected Linear '{name}'."),
            };
            list.Add(new QuantizableLayer(name, block, role, linear));
        }
        return list;
    }

    IQuantizableModel IQuantizableModel.Clone() => Clone();

    string IPersistableModel.FormatName => ShapesVlmCheckpoint.FormatName;

    byte[] IPersistableModel.Serialize() => ShapesVlmCheckpoint.Serialize(this);

    /// <summary>A copy with the same configuration and parameter values, on the same device.</summary>
    public ShapesVlm Clone() => _lookupLayers > 0
        ? throw new InvalidOperationException("This model runs QuantizedLinear layers (UseLookupKernels); clone the model before swapping them in.")
        : ModuleCopy.From(new ShapesVlm(Config), this, Device);

    Tensor IQuantizableModel.Logits(ModelBatch batch) => Logits(batch as VlmBatch
        ?? throw new ArgumentException($"ShapesVlm needs a {nameof(VlmBatch)} (from its own Encode), got {batch.GetType().Name}.", nameof(batch)));

    /// <summary>Next-token logits over the whole sequence, [batch, length, vocabulary], aligned with the batch's labels.</summary>
    public Tensor Logits(VlmBatch batch) => call(batch.Pixels, batch.Tokens);

    public Tensor Loss(VlmBatch batch) => LossFromLogits(Logits(batch), batch);

    /// <summary>Answer-token cross-entropy from logits already computed for <paramref name="batch"/>.</summary>
    public static Tensor LossFromLogits(Tensor logits, VlmBatch batch) =>
        F.cross_entropy(logits.reshape(-1, logits.shape[2]), batch.Labels.reshape(-1), ignore_index: -100);

    public Tensor AnswerLogits(VlmBatch batch)
    {
        using var scope = NewDisposeScope();
        var logits = call(batch.Pixels, batch.Tokens);
        return GatherAnswerLogits(logits, batch).MoveToOuterDisposeScope();
    }

    public static Tensor GatherAnswerLogits(Tensor logits, VlmBatch batch)
    {
        var rowsIdx = arange(batch.Count, device: logits.device);
        var pos = tensor(batch.AnswerPositions, device: logits.device);
        return logits.index(TensorIndex.Tensor(rowsIdx), TensorIndex.Tensor(pos));
    }

    public string AnswerText(long tokenId) => Tokenizer.Decode((int)tokenId);

    public VlmPrediction Predict(VlmBatch batch)
    {
        using var scope = NewDisposeScope();
        using var _ = no_grad();
        var probs = F.softmax(AnswerLogits(batch).to_type(ScalarType.Float32), -1);
        var (best, arg) = probs.max(1);
        var ids = arg.cpu().data<long>().ToArray();
        var scores = best.cpu().data<float>().ToArray();
        return new VlmPrediction(ids.Select(AnswerText).ToArray(), scores);
    }

    private void Initialize()
    {
        using var _ = no_grad();
        int depth = Config.VisionLayers + Config.TextLayers;
        var residual = vision.Blocks.SelectMany(bk => bk.ResidualOutputs)
            .Concat(layers.SelectMany(bk => bk.ResidualOutputs)).ToHashSet();
        foreach (var (_, module) in named_modules())
        {
            if (module is Linear lin)
            {
                // GPT-2 style: small normal init; residual outputs shrunk with depth.
                double std = residual.Contains(lin) ? 0.02 / Math.Sqrt(2.0 * depth) : 0.02;
                Init.TruncatedNormal(lin.weight, std);
                lin.bias?.zero_();
            }
            else if (module is Conv2d conv)
            {
                // He init for the stem (reference-vlm.md: default init let image features collapse).
                nn.init.kaiming_normal_(conv.weight, nonlinearity: nn.init.NonlinearityType.ReLU);
                conv.bias?.zero_();
            }
        }
        Init.TruncatedNormal(embed_tokens.weight!, 0.02);
        Init.TruncatedNormal(pos_embed, 0.02);
        InitializeImageGrid();
    }

    /// <summary>
    /// Fresh row/column embeddings at the scale of the projected image features: at the 0.02 of the sequence table,
    /// position was a small fraction of an image token and spatial questions stayed at chance (bench/RESULTS.md).
    /// </summary>
    private void InitializeImageGrid()
    {
        if (image_rows is null || image_cols is null) return;
        using var _ = no_grad();
        Init.TruncatedNormal(image_rows, 1.0);
        Init.TruncatedNormal(image_cols, 1.0);
    }

    /// <summary>Two-layer MLP mapping image features into the language model's width.</summary>
    private sealed class Projector : nn.Module<Tensor, Tensor>
    {
        private readonly nn.Module<Tensor, Tensor> fc1, fc2;

        public Projector(string name, int inWidth, int outWidth) : base(name)
        {
            fc1 = nn.Linear(inWidth, outWidth);
            fc2 = nn.Linear(outWidth, outWidth);
            RegisterComponents();
        }

        public override Tensor forward(Tensor x) => fc2.call(F.gelu(fc1.call(x)));
    }
}
