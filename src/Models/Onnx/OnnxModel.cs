using Msavq.MLNet.Format;
using Msavq.MLNet.Models.Text;
using TorchSharp;
using static TorchSharp.torch;

namespace Msavq.MLNet.Models.Onnx;

/// <summary>
/// Bring your own model: an ONNX graph run eagerly in TorchSharp (<see cref="OnnxExecutor"/>), whose MatMul and Gemm
/// nodes with constant weights are the quantizable Linears (<see cref="OnnxLayerOptions"/>). This first form reads
/// text (<see cref="OnnxTextOptions"/>): a sentence encoder, calibrated like <c>MiniLmEncoder</c> on the in-batch
/// contrastive objective between each row's text and its partner (<see cref="ContrastivePairs"/>). Loading checks
/// everything a calibration would trip on — operators, attributes, inputs, the chosen layers — and runs the graph once
/// on two short sentences, so errors come before any work.
/// </summary>
public sealed class OnnxModel : nn.Module, IQuantizableModel
{
    private readonly OnnxExecutor graph;
    private IReadOnlyList<QuantizableLayer>? _quantizable;

    private OnnxModel(OnnxGraph onnx, OnnxTextOptions text, IReadOnlyList<OnnxLinear> layers) : base(nameof(OnnxModel))
    {
        Text = text;
        graph = new OnnxExecutor(onnx, layers);
        RegisterComponents();
    }

    public OnnxTextOptions Text { get; }

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
        var model = new OnnxModel(parsed, text, (layers ?? new OnnxLayerOptions()).Select(parsed));
        try
        {
            if (device != null) model.to(device);
            model.eval();
            model.CheckLayersSeeTokens();
            return model;
        }
        catch
        {
            model.Dispose();
            throw;
        }
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
            Embed(tokens, mask);
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
        BertTokens.Encode(Text.Tokenizer, sentences, Text.MaxTokens, Device);

    /// <summary>The value <see cref="OnnxTextOptions.OutputName"/> for token ids [B, T] and a mask [B, T] (1 = token, 0 = padding).</summary>
    public Tensor Hidden(Tensor tokens, Tensor mask)
    {
        using var scope = NewDisposeScope();
        var inputs = new Dictionary<string, Tensor> { [Text.InputIdsName] = tokens };
        if (Text.AttentionMaskName is { } m) inputs[m] = mask;
        if (Text.TokenTypeIdsName is { } t) inputs[t] = zeros_like(tokens);
        var outputs = graph.Run(inputs, (tokens.shape[0], tokens.shape[1]));
        return outputs[Text.OutputName].MoveToOuterDisposeScope();
    }

    /// <summary>Sentence vectors [B, H]: <see cref="Hidden"/>, pooled and normalized as <see cref="Text"/> says.</summary>
    public Tensor Embed(Tensor tokens, Tensor mask)
    {
        using var scope = NewDisposeScope();
        return SentencePool.Apply(Hidden(tokens, mask), mask, Text.Pooling, Text.Normalize).MoveToOuterDisposeScope();
    }

    /// <summary>Sentence vectors [N, H] of <paramref name="sentences"/>, on <see cref="Device"/>.</summary>
    public Tensor Embed(IReadOnlyList<string> sentences)
    {
        using var scope = NewDisposeScope();
        var (tokens, mask) = Tokenize(sentences);
        return Embed(tokens, mask).MoveToOuterDisposeScope();
    }

    public IReadOnlyList<QuantizableLayer> QuantizableLayers => _quantizable ??=
        graph.Layers.Zip(graph.Linears, (l, module) => new QuantizableLayer(l.Name, l.Block, LayerRole.Language, module)).ToList();

    /// <summary>Row i's text and its partner become sequences 2i and 2i+1, labelled with each other's index (<see cref="ContrastivePairs"/>).</summary>
    public ModelBatch Encode(IReadOnlyList<ModelRow> rows) => ContrastivePairs.Encode(rows, nameof(OnnxModel), Tokenize, Device);

    /// <summary>In-batch contrastive logits [N, 1, N] (<see cref="ContrastivePairs.Logits"/>).</summary>
    public Tensor Logits(ModelBatch batch)
    {
        using var scope = NewDisposeScope();
        var e = Embed(batch.Tokens, batch.Valid);
        // Cosines are what the objective compares; a head that does not normalize is normalized here.
        return ContrastivePairs.Logits(Text.Normalize ? e : nn.functional.normalize(e, p: 2, dim: 1)).MoveToOuterDisposeScope();
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

    IQuantizableModel IQuantizableModel.Clone() => Clone();

    /// <summary>A copy with the same graph, options and parameter values, on the same device.</summary>
    public OnnxModel Clone() => ModuleCopy.From(new OnnxModel(graph.Graph, Text, graph.Layers), this, Device);
}
