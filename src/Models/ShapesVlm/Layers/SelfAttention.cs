using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;
using F = TorchSharp.torch.nn.functional;

namespace Msavq.MLNet.Models.Layers;

/// <summary>Multi-head self-attention with separate q/k/v/o projections (the layers GPTQ-style methods quantize).</summary>
public sealed class SelfAttention : nn.Module<Tensor, Tensor>
{
    // Module-typed so a QuantizedLinear can take a projection's place (ShapesVlm.UseLookupKernels).
    private readonly nn.Module<Tensor, Tensor> q_proj, k_proj, v_proj, o_proj;
    private readonly int _heads;
    private readonly bool _causal;

    public SelfAttention(string name, int width, int heads, bool causal, bool bias) : base(name)
    {
        if (width % heads != 0) throw new ArgumentException($"width {width} is not divisible by {heads} heads.");
        q_proj = nn.Linear(width, width, hasBias: bias);
        k_proj = nn.Linear(width, width, hasBias: bias);
        v_proj = nn.Linear(width, width, hasBias: bias);
        o_proj = nn.Linear(width, width, hasBias: bias);
        _heads = heads;
        _causal = causal;
        RegisterComponents();
    }

    /// <summary>The output projection, which residual-scaled init treats specially.</summary>
    public Linear Output => (Linear)o_proj;

    public override Tensor forward(Tensor x)
    {
        using var scope = NewDisposeScope();
        long b = x.shape[0], l = x.shape[1], w = x.shape[2], hd = w / _heads;
        Tensor Split(Tensor t) => t.view(b, l, _heads, hd).transpose(1, 2);
        var q = Split(q_proj.call(x));
        var k = Split(k_proj.call(x));
        var v = Split(v_proj.call(x));
        var y = F.scaled_dot_product_attention(q, k, v, is_casual: _causal);
        return o_proj.call(y.transpose(1, 2).reshape(b, l, w)).MoveToOuterDisposeScope();
    }
}
