using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;
using F = TorchSharp.torch.nn.functional;

namespace Msavq.MLNet.Models.MiniLm;

/// <summary>
/// One post-LayerNorm BERT encoder layer: x ← LN(x + O·attn(Qx, Kx, Vx)); x ← LN(x + W₂·GELU(W₁x)). The six Linears
/// are the ONNX graph's six MatMuls of the layer, in its order, and each is invoked with <c>call()</c>.
/// </summary>
public sealed class BertLayer : nn.Module<Tensor, Tensor, Tensor>
{
    /// <summary>The Linears in the ONNX graph's order: Q, K, V, attention output, FFN in, FFN out.</summary>
    public static readonly string[] LinearNames = { "query", "key", "value", "attention_output", "intermediate", "output" };

    private readonly Linear query, key, value, attention_output, intermediate, output;
    private readonly LayerNorm attention_norm, output_norm;
    private readonly int _heads;

    public BertLayer(string name, MiniLmConfig config) : base(name)
    {
        _heads = config.Heads;
        query = nn.Linear(config.Hidden, config.Hidden);
        key = nn.Linear(config.Hidden, config.Hidden);
        value = nn.Linear(config.Hidden, config.Hidden);
        attention_output = nn.Linear(config.Hidden, config.Hidden);
        attention_norm = nn.LayerNorm(config.Hidden, config.LayerNormEpsilon);
        intermediate = nn.Linear(config.Hidden, config.Intermediate);
        output = nn.Linear(config.Intermediate, config.Hidden);
        output_norm = nn.LayerNorm(config.Hidden, config.LayerNormEpsilon);
        RegisterComponents();
    }

    /// <summary>The Linears in <see cref="LinearNames"/> order.</summary>
    public IReadOnlyList<Linear> Linears => new[] { query, key, value, attention_output, intermediate, output };

    /// <summary>The two LayerNorms: after attention, after the FFN.</summary>
    public (LayerNorm Attention, LayerNorm Output) Norms => (attention_norm, output_norm);

    /// <param name="x">[B, T, H] hidden states.</param>
    /// <param name="maskBias">[B, 1, 1, T] additive attention bias: 0 on tokens, −10⁴ on padding (as the BERT export).</param>
    public override Tensor forward(Tensor x, Tensor maskBias)
    {
        using var scope = NewDisposeScope();
        // The same head split as ShapesVlm's SelfAttention, on purpose not shared: BERT attends both ways under a padding
        // mask and applies post-norm, the decoder attends causally with pre-norm, and each file reads like its paper.
        long b = x.shape[0], t = x.shape[1], h = x.shape[2], d = h / _heads;
        Tensor Heads(Tensor y) => y.view(b, t, _heads, d).transpose(1, 2);
        var q = Heads(query.call(x));
        var k = Heads(key.call(x));
        var v = Heads(value.call(x));
        // Explicit Scalars throughout (RmsNorm says why: implicit ones are left to the finalizer).
        using var root = Math.Sqrt(d).ToScalar();
        var scores = matmul(q, k.transpose(2, 3)).div(root).add(maskBias);
        var context = matmul(F.softmax(scores, -1), v).transpose(1, 2).reshape(b, t, h);
        x = attention_norm.call(x + attention_output.call(context));
        // Exact (erf) GELU, as the graph computes it.
        x = output_norm.call(x + output.call(F.gelu(intermediate.call(x))));
        return x.MoveToOuterDisposeScope();
    }
}
