using Msavq.MLNet.Format;
using Msavq.MLNet.Models.Text;
using TorchSharp;
using static TorchSharp.torch;

namespace Msavq.MLNet.Models.Onnx;

/// <summary>
/// Bring your own model: an ONNX graph run eagerly in TorchSharp (<see cref="OnnxExecutor"/>), whose MatMul, Gemm and
/// Conv nodes with constant weights are the quantizable Linears (<see cref="OnnxLayerOptions"/>). It reads either
/// text (<see cref="OnnxTextOptions"/>): a sentence encoder, calibrated like <c>MiniLmEncoder</c> on the in-batch
/// contrastive objective between each row's text and its partner (<see cref="ContrastivePairs"/>); or images
/// (<see cref="OnnxImageOptions"/>): an image featurizer, calibrated on the in-batch contrastive objective between each
/// image and its mirror image, or a model whose output is class scores (a classifier, a CTC text recognizer),
/// calibrated on its own predictions with sampled labels for the curvature (<see cref="OnnxOutputKind"/>). Loading checks everything a calibration would trip on —
/// operators, attributes, inputs, the chosen layers — and runs the graph once on a small input, so errors come before
/// any work.
/// </summary>
public sealed class OnnxModel : nn.Module, IFeatureModel, IPersistableModel
{
    private readonly OnnxExecutor graph;
    private IReadOnlyList<QuantizableLayer>? _quantizable;

    private OnnxModel(OnnxGraph onnx, OnnxTextOptions? text, OnnxImageOptions? image, IReadOnlyList<OnnxLinear> layers, int featureLength = 0)
        : base(nameof(OnnxModel))
    {
        FeatureLength = featureLength;
        Text = text;
        Image = image;
        graph = new OnnxExecutor(onnx, layers);
        RegisterComponents();
    }

    /// <summary>How the model reads text; null for an image model.</summary>
    public OnnxTextOptions? Text { get; }

    /// <summary>How the model reads images, with names and size resolved from the graph; null for a text model.</summary>
    public OnnxImageOptions? Image { get; }

    /// <summary>The graph and its Linears.</summary>
    public OnnxExecutor Graph => graph;

    public Device Device => graph.Linears[0].weight!.device;

    /// <summary>The ONNX model in the file at <paramref name="path"/>.</summary>
    /// <remarks>Call it outside any dispose scope: the scope would free the parameters (architecture.md §6).</remarks>
    public static OnnxModel Load(string path, OnnxTextOptions text, OnnxLayerOptions? layers = null, Device? device = null) =>
        Load(File.ReadAllBytes(path), text, layers, device, path);

    /// <summary>The ONNX model <paramref name="onnx"/>; <paramref name="source"/> names it in errors.</summary>
    /// <remarks>Call it outside any dispose scope: the scope would free the parameters (architecture.md §6).</remarks>
    public static OnnxModel Load(byte[] onnx, OnnxTextOptions text, OnnxLayerOptions? layers = null, Device? device = null,
                                 string source = "the ONNX model")
    {
        ArgumentNullException.ThrowIfNull(text);
        if (text.MaxTokens < 2) throw new ArgumentOutOfRangeException(nameof(text), text.MaxTokens, "MaxTokens must leave room for [CLS] and [SEP].");
        var parsed = OnnxGraph.Load(onnx, source, new[] { text.OutputName });
        CheckInputs(parsed, text);
        return Checked(new OnnxModel(parsed, text, null, (layers ?? new OnnxLayerOptions()).Select(parsed)), device);
    }

    /// <summary>The ONNX image model in the file at <paramref name="path"/>.</summary>
    /// <remarks>Call it outside any dispose scope: the scope would free the parameters (architecture.md §6).</remarks>
    public static OnnxModel Load(string path, OnnxImageOptions image, OnnxLayerOptions? layers = null, Device? device = null) =>
        Load(File.ReadAllBytes(path), image, layers, device, path);

    /// <summary>The ONNX image model <paramref name="onnx"/>; <paramref name="source"/> names it in errors.</summary>
    /// <remarks>Call it outside any dispose scope: the scope would free the parameters (architecture.md §6).</remarks>
    public static OnnxModel Load(byte[] onnx, OnnxImageOptions image, OnnxLayerOptions? layers = null, Device? device = null,
                                 string source = "the ONNX model")
    {
        ArgumentNullException.ThrowIfNull(image);
        var parsed = OnnxGraph.Load(onnx, source, image.OutputName is { } name ? new[] { name } : null);
        if (parsed.Outputs.Count != 1)
            throw new ArgumentException($"{source} has {parsed.Outputs.Count} outputs ({string.Join(", ", parsed.Outputs)}): set {nameof(OnnxImageOptions.OutputName)}.");
        var resolved = Resolve(parsed, image with { OutputName = parsed.Outputs[0] });
        return Checked(new OnnxModel(parsed, null, resolved, (layers ?? new OnnxLayerOptions()).Select(parsed)), device);
    }

    private static OnnxModel Checked(OnnxModel model, Device? device)
    {
        try
        {
            if (device != null) model.to(device);
            model.eval();
            if (model.Text != null) model.CheckLayersSeeTokens();
            else model.CheckImageRuns();
            return model;
        }
        catch
        {
            model.Dispose();
            throw;
        }
    }

    /// <summary>The image options with the input name and the size read from the graph where the caller left them out.</summary>
    private static OnnxImageOptions Resolve(OnnxGraph onnx, OnnxImageOptions image)
    {
        var input = image.InputName is { } name
            ? onnx.Inputs.FirstOrDefault(i => i.Name == name)
              ?? throw new ArgumentException($"{onnx.Source}: {nameof(OnnxImageOptions.InputName)} = '{name}', but '{image.OutputName}' reads no such graph input " +
                                             $"(it reads {string.Join(", ", onnx.Inputs.Select(i => $"'{i.Name}'"))}).")
            : onnx.Inputs.Count == 1 ? onnx.Inputs[0]
            : throw new ArgumentException($"{onnx.Source}: '{image.OutputName}' reads {onnx.Inputs.Count} inputs ({string.Join(", ", onnx.Inputs.Select(i => i.Name))}); " +
                                          $"an image model feeds one: set {nameof(OnnxImageOptions.InputName)}, or pick an output that needs only the images.");
        foreach (var other in onnx.Inputs.Where(i => i.Name != input.Name))
            throw new ArgumentException($"{onnx.Source}: graph input '{other.Name}' is not fed: an image model feeds only '{input.Name}'.");
        var dims = input.Dims;
        if (dims != null && dims.Length != 4)
            throw new ArgumentException($"{onnx.Source}: input '{input.Name}' is {dims.Length}-D, not images [batch, channels, height, width].");
        if (dims?[1] is { } c && c != 3) throw new ArgumentException($"{onnx.Source}: input '{input.Name}' has {c} channels; images have 3.");
        int Size(int? given, long? declared, string what) =>
            given ?? (declared is { } d and > 0 ? checked((int)d)
                : throw new ArgumentException($"{onnx.Source}: input '{input.Name}' declares no fixed {what.ToLowerInvariant()}: set {nameof(OnnxImageOptions)}.{what}."));
        var resolved = image with
        {
            Output = image.Output != OnnxOutputKind.Auto ? image.Output
                : onnx.OperatorOf(image.OutputName!) switch
                {
                    "Softmax" => OnnxOutputKind.Probabilities, "LogSoftmax" => OnnxOutputKind.Logits, _ => OnnxOutputKind.Embedding,
                },
            InputName = input.Name,
            Height = Size(image.Height, dims?[2], nameof(OnnxImageOptions.Height)),
            Width = Size(image.Width, dims?[3], nameof(OnnxImageOptions.Width)),
        };
        if (resolved.Height < 1 || resolved.Width < 1) throw new ArgumentException($"Image size {resolved.Width}×{resolved.Height} is not positive.");
        if (resolved.Mean is not { Length: 3 } || resolved.Std is not { Length: 3 } || resolved.Std.Any(s => !(s != 0 && float.IsFinite(s)))
            || resolved.Mean.Any(m => !float.IsFinite(m)) || !float.IsFinite(resolved.Scale))
            throw new ArgumentException($"{nameof(OnnxImageOptions.Mean)} and {nameof(OnnxImageOptions.Std)} need three finite values each (Std non-zero), and {nameof(OnnxImageOptions.Scale)} a finite one.");
        return resolved;
    }

    /// <summary>Runs the graph once on one blank image: shape errors surface now, and every chosen layer must run.</summary>
    private void CheckImageRuns()
    {
        var ran = new HashSet<string>();
        var hooks = QuantizableLayers.Select(l => l.Module.register_forward_hook((_, x, y) => { ran.Add(l.Name); return y; })).ToList();
        try
        {
            using var scope = NewDisposeScope();
            using var _ = no_grad();
            var o = Image!;
            FeatureLength = checked((int)EmbedImages(new[] { new byte[o.Height!.Value * o.Width!.Value * 3] }).shape[1]);
            foreach (var l in QuantizableLayers)
                if (!ran.Contains(l.Name)) throw new InvalidOperationException($"{graph.Graph.Source}: layer '{l.Name}' did not run.");
        }
        finally { foreach (var h in hooks) h.remove(); }
    }

    private OnnxTextOptions TextOptions => Text ?? throw new InvalidOperationException($"{graph.Graph.Source} was loaded as an image model; it reads no text.");

    private OnnxImageOptions ImageOptions => Image ?? throw new InvalidOperationException($"{graph.Graph.Source} was loaded as a text model; it reads no images.");

    /// <summary>
    /// Feature vectors [N, features] of <paramref name="images"/> (encoded files or raw RGB bytes, <see cref="OnnxImageOptions"/>):
    /// the output value flattened per image, on <see cref="Device"/>.
    /// </summary>
    public Tensor EmbedImages(IReadOnlyList<byte[]> images)
    {
        using var scope = NewDisposeScope();
        return EmbedPixels(Pixels(images)).MoveToOuterDisposeScope();
    }

    /// <summary>
    /// Graph-ready pixels [N, 3, H, W] of <paramref name="images"/> (encoded files, resized, or raw RGB bytes of the
    /// model's size), scaled and normalized as <see cref="Image"/> says, on <see cref="Device"/>.
    /// </summary>
    public Tensor Pixels(IReadOnlyList<byte[]> images)
    {
        var o = ImageOptions;
        var rgb = images.Select((img, i) => OnnxImages.Rgb(img, o.Height!.Value, o.Width!.Value, $"Image {i}")).ToList();
        return OnnxImages.ToTensor(rgb, o, Device);
    }

    /// <summary>Feature vectors [N, features] of graph-ready pixels [N, 3, H, W].</summary>
    public Tensor EmbedPixels(Tensor pixels)
    {
        using var scope = NewDisposeScope();
        var y = Output(pixels);
        return y.reshape(y.shape[0], -1).MoveToOuterDisposeScope();
    }

    /// <summary>The output value for graph-ready pixels [N, 3, H, W], shaped as the graph makes it (e.g. a CTC head's [N, T, classes]).</summary>
    public Tensor Output(Tensor pixels)
    {
        using var scope = NewDisposeScope();
        var o = ImageOptions;
        return graph.Run(new Dictionary<string, Tensor> { [o.InputName!] = pixels })[o.OutputName!].MoveToOuterDisposeScope();
    }

    /// <summary>
    /// Log-probabilities [N, P, classes] for pixels [N, 3, H, W] of a model whose output is
    /// <see cref="OnnxOutputKind.Logits"/> or <see cref="OnnxOutputKind.Probabilities"/>: one distribution per image
    /// (P = 1) or per position of the output's middle axes.
    /// </summary>
    public Tensor LogProbabilities(Tensor pixels)
    {
        using var scope = NewDisposeScope();
        var kind = ImageOptions.Output;
        if (kind is not (OnnxOutputKind.Logits or OnnxOutputKind.Probabilities))
            throw new InvalidOperationException($"{graph.Graph.Source}: the output '{ImageOptions.OutputName}' is {kind}, not class scores.");
        var y = Output(pixels);
        if (y.dim() < 2) throw new InvalidOperationException($"{graph.Graph.Source}: the output '{ImageOptions.OutputName}' is {y.dim()}-D; class scores are [N, …, classes].");
        y = y.reshape(y.shape[0], -1, y.shape[^1]);
        // A probability of exactly 0 would give −∞ (and NaN gradients): the floor is far below any decision.
        using var floor = 1e-30.ToScalar();
        return (kind == OnnxOutputKind.Probabilities ? y.clamp_min(floor).log() : nn.functional.log_softmax(y, -1)).MoveToOuterDisposeScope();
    }

    /// <summary>Every input the output needs is one the options feed, and every name the options give is a graph input.</summary>
    private static void CheckInputs(OnnxGraph onnx, OnnxTextOptions text)
    {
        var fed = new (string What, string? Name)[]
        {
            (nameof(OnnxTextOptions.InputIdsName), text.InputIdsName), (nameof(OnnxTextOptions.AttentionMaskName), text.AttentionMaskName),
            (nameof(OnnxTextOptions.TokenTypeIdsName), text.TokenTypeIdsName),
        };
        string Configured() => string.Join(", ", fed.Select(f => $"{f.What} = {(f.Name is null ? "null" : $"'{f.Name}'")}"));
        foreach (var input in onnx.Inputs)
            if (!fed.Any(f => f.Name == input.Name))
                throw new ArgumentException($"{onnx.Source}: graph input '{input.Name}' is fed by none of the text options ({Configured()}); " +
                                            "a text model feeds token ids, attention mask and token types only.");
        var inputs = onnx.Inputs.Select(i => i.Name).ToHashSet();
        foreach (var (what, name) in fed)
            if (name != null && !inputs.Contains(name))
                throw new ArgumentException($"{onnx.Source}: {what} = '{name}', but '{text.OutputName}' reads no such graph input " +
                                            $"(it reads {string.Join(", ", inputs.Select(i => $"'{i}'"))}); set {what} to the right name, or to null if there is none.");
    }

    /// <summary>
    /// Runs the graph once on two sentences of different lengths: shape errors surface now, and every chosen Linear
    /// must see [batch, tokens, features] — calibration tells image from text tokens by position, so a layer after
    /// pooling ([batch, features]) cannot be calibrated as a token layer.
    /// </summary>
    private void CheckLayersSeeTokens()
    {
        var seen = new Dictionary<string, long[]>();
        var hooks = QuantizableLayers.Select(l => l.Module.register_forward_hook((_, x, y) => { seen[l.Name] = x.shape; return y; })).ToList();
        try
        {
            using var scope = NewDisposeScope();
            using var _ = no_grad();
            var (tokens, mask) = Tokenize(new[] { "Loading checks the graph.", "Once." });
            FeatureLength = checked((int)Embed(tokens, mask).shape[1]);
            foreach (var l in QuantizableLayers)
            {
                if (!seen.TryGetValue(l.Name, out var shape))
                    throw new InvalidOperationException($"{graph.Graph.Source}: layer '{l.Name}' did not run.");
                if (shape.Length != 3 || shape[0] != tokens.shape[0] || shape[1] != tokens.shape[1])
                    throw new NotSupportedException($"{graph.Graph.Source}: layer '{l.Name}' sees [{string.Join(", ", shape)}] for tokens " +
                        $"[{string.Join(", ", tokens.shape)}], not one row per token; leave it out ({nameof(OnnxLayerOptions)}).");
            }
        }
        finally { foreach (var h in hooks) h.remove(); }
    }

    /// <summary>Token ids [N, T] and mask [N, T] of <paramref name="sentences"/> (<see cref="BertTokens"/>), on <see cref="Device"/>.</summary>
    public (Tensor Tokens, Tensor Mask) Tokenize(IReadOnlyList<string> sentences) =>
        BertTokens.Encode(TextOptions.Tokenizer, sentences, TextOptions.MaxTokens, Device);

    /// <summary>The value <see cref="OnnxTextOptions.OutputName"/> for token ids [B, T] and a mask [B, T] (1 = token, 0 = padding).</summary>
    public Tensor Hidden(Tensor tokens, Tensor mask)
    {
        using var scope = NewDisposeScope();
        var text = TextOptions;
        var inputs = new Dictionary<string, Tensor> { [text.InputIdsName] = tokens };
        if (text.AttentionMaskName is { } m) inputs[m] = mask;
        if (text.TokenTypeIdsName is { } t) inputs[t] = zeros_like(tokens);
        var outputs = graph.Run(inputs, (tokens.shape[0], tokens.shape[1]));
        return outputs[text.OutputName].MoveToOuterDisposeScope();
    }

    /// <summary>Sentence vectors [B, H]: <see cref="Hidden"/>, pooled and normalized as <see cref="Text"/> says.</summary>
    public Tensor Embed(Tensor tokens, Tensor mask)
    {
        using var scope = NewDisposeScope();
        return SentencePool.Apply(Hidden(tokens, mask), mask, TextOptions.Pooling, TextOptions.Normalize).MoveToOuterDisposeScope();
    }

    /// <summary>Sentence vectors [N, H] of <paramref name="sentences"/>, on <see cref="Device"/>.</summary>
    public Tensor Embed(IReadOnlyList<string> sentences)
    {
        using var scope = NewDisposeScope();
        var (tokens, mask) = Tokenize(sentences);
        return Embed(tokens, mask).MoveToOuterDisposeScope();
    }

    /// <summary>The chosen layers; a text model's are <see cref="LayerRole.Language"/>, an image model's <see cref="LayerRole.Vision"/>.</summary>
    public IReadOnlyList<QuantizableLayer> QuantizableLayers => _quantizable ??=
        graph.Layers.Zip(graph.Linears, (l, module) => new QuantizableLayer(l.Name, l.Block, Text != null ? LayerRole.Language : LayerRole.Vision, module)).ToList();

    /// <summary>
    /// Text: row i's text and its partner become sequences 2i and 2i+1, labelled with each other's index
    /// (<see cref="ContrastivePairs"/>). Images with an <see cref="OnnxOutputKind.Embedding"/> output: row i's image and
    /// its mirror image, likewise; with class scores: each image once, labelled at every position with the model's own
    /// greedy prediction (<see cref="OnnxImages"/>).
    /// </summary>
    public ModelBatch Encode(IReadOnlyList<ModelRow> rows) =>
        Image is { } image
            ? image.Output == OnnxOutputKind.Embedding ? OnnxImages.Encode(rows, image, Device) : OnnxImages.EncodePredicted(rows, image, Device, LogProbabilities)
            : ContrastivePairs.Encode(rows, nameof(OnnxModel), Tokenize, Device);

    /// <summary>
    /// In-batch contrastive logits [N, 1, N] (<see cref="ContrastivePairs.Logits"/>); for an image model whose output
    /// is class scores, its log-probabilities [N, P, classes] (<see cref="LogProbabilities"/>).
    /// </summary>
    public Tensor Logits(ModelBatch batch)
    {
        using var scope = NewDisposeScope();
        if (Image != null)
        {
            var pixels = (batch as ImageBatch ?? throw new ArgumentException($"An image model's batch comes from its own {nameof(Encode)}.", nameof(batch))).Pixels;
            if (Image.Output != OnnxOutputKind.Embedding) return LogProbabilities(pixels).MoveToOuterDisposeScope();
            return ContrastivePairs.Logits(nn.functional.normalize(EmbedPixels(pixels), p: 2, dim: 1)).MoveToOuterDisposeScope();
        }
        var e = Embed(batch.Tokens, batch.Valid);
        // Cosines are what the objective compares; a head that does not normalize is normalized here.
        return ContrastivePairs.Logits(TextOptions.Normalize ? e : nn.functional.normalize(e, p: 2, dim: 1)).MoveToOuterDisposeScope();
    }

    /// <summary>Why an image model cannot calibrate on <paramref name="row"/> (no image, or bytes that are no image), or null.</summary>
    public string? RowProblem(ModelRow row)
    {
        if (Image is not { } o) return null;
        if (row.Image is not { Length: > 0 }) return "it has no image";
        if (row.Image.Length == o.Height!.Value * o.Width!.Value * 3) return null;
        using var codec = SkiaSharp.SKCodec.Create(new MemoryStream(row.Image));
        return codec is null ? $"its {row.Image.Length} bytes are neither an image file nor {o.Height}×{o.Width}×3 raw RGB bytes" : null;
    }

    /// <summary>
    /// The ONNX model this one was loaded from, with this model's Linear weights in place of the file's: after
    /// quantization (<c>MixedPrecisionVqTransformer.Model</c>) the dequantized weights the chain evaluated, bit for bit,
    /// in a file ONNX Runtime and ML.NET's <c>ApplyOnnxModel</c> run. Nothing else changes, except that a Gemm's alpha
    /// (and a beta other than 1), folded into the Linear, become 1 (<see cref="OnnxExport"/>).
    /// </summary>
    public byte[] ToOnnx() => OnnxExport.WithWeights(graph.Graph, graph.Layers, graph.Linears, null, out _);

    /// <summary>
    /// <see cref="ToOnnx()"/>, with the scalar layers among <paramref name="quantized"/> (this model's own, from
    /// <c>MixedPrecisionVqTransformer.Quantized</c>) written as ONNX Runtime's <c>com.microsoft.MatMulNBits</c> — codes
    /// packed at 2, 4 or 8 bits, a scale and zero point per row and block — where the layer is a MatMul with groups of a
    /// power of two ≥ 16 columns: a small file ONNX Runtime runs. The others keep float32 weights;
    /// <paramref name="packed"/> names the packed ones. Only ONNX Runtime runs the result (the operator is a contrib op).
    /// </summary>
    public byte[] ToOnnx(IReadOnlyList<QuantizedLayer> quantized, out IReadOnlyList<string> packed)
    {
        ArgumentNullException.ThrowIfNull(quantized);
        var bytes = OnnxExport.WithWeights(graph.Graph, graph.Layers, graph.Linears, quantized, out var names);
        packed = names;
        return bytes;
    }

    /// <summary><see cref="ToOnnx"/> written to <paramref name="path"/> atomically (a temporary file, flushed, then renamed).</summary>
    public void SaveOnnx(string path)
    {
        AtomicFile.EnsureWritable(path, "ONNX output");
        AtomicFile.Write(path, ToOnnx());
    }

    /// <summary>Text for a text model, images for an image model.</summary>
    public FeatureSource Source => Text != null ? FeatureSource.Text : FeatureSource.Image;

    /// <summary>
    /// The length of a row's vector, found when the model loaded: a text model's sentence vector (pooled as
    /// <see cref="OnnxTextOptions.Pooling"/> says), an image model's output value flattened (features, or class scores
    /// at every position).
    /// </summary>
    public int FeatureLength { get; private set; }

    /// <summary>The rows' vectors [N, <see cref="FeatureLength"/>]: <see cref="Embed(IReadOnlyList{string})"/> of their texts, or <see cref="EmbedImages"/> of their images.</summary>
    public Tensor Features(IReadOnlyList<ModelRow> rows) =>
        Text != null ? Embed(rows.Select(r => r.Text).ToList()) : EmbedImages(rows.Select(r => r.Image).ToList());

    string IPersistableModel.FormatName => OnnxModelCheckpoint.FormatName;

    /// <summary>The graph with this model's weights, its options and its layers (<see cref="OnnxModelCheckpoint"/>), for a saved pipeline.</summary>
    public byte[] Serialize() => OnnxModelCheckpoint.Serialize(this);

    IQuantizableModel IQuantizableModel.Clone() => Clone();

    /// <summary>A copy with the same graph, options and parameter values, on the same device.</summary>
    public OnnxModel Clone() => ModuleCopy.From(new OnnxModel(graph.Graph, Text, Image, graph.Layers, FeatureLength), this, Device);
}
