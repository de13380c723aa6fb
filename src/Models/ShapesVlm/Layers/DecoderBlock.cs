using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;
using F = TorchSharp.torch.nn.functional;

namespace Msavq.MLNet.Models.Layers;

/// <summary>LLaMA-style decoder block: RMSNorm → causal attention, RMSNorm → SwiGLU (gate_proj, up_proj, down_proj).</summary>
public sealed class DecoderBlock : nn.Module<Tensor, Tensor>
{
    private readonly RmsNorm input_norm, post_attention_norm;
    private readonly SelfAttention self_attn;
    private readonly nn.Module<Tensor, Tensor> gate_proj, up_proj, down_proj;

    public DecoderBlock(string name, int width, int heads, int mlp) : base(name)
    {
        input_norm = new RmsNorm("input_norm", width);
        self_attn = new SelfAttention("self_attn", width, heads, causal: true, bias: false);
        post_attention_norm = new RmsNorm("post_attention_norm", width);
        gate_proj = nn.Linear(width, mlp, hasBias: false);
        up_proj = nn.Linear(width, mlp, hasBias: false);
        down_proj = nn.Linear(mlp, width, hasBias: false);
        RegisterComponents();
    }

    public IEnumerable<Linear> ResidualOutputs => new[] { self_attn.Output, (Linear)down_proj };

    public override Tensor forward(Tensor x)
    {
        using var scope = NewDisposeScope();
        // a + b is add(b, alpha: 1) with an implicit Scalar: explicit here, as in RmsNorm.
        using var one = 1.ToScalar();
        x = x.add(self_attn.call(input_norm.call(x)), one);
        var h = post_attention_norm.call(x);
        x = x.add(down_proj.call(F.silu(gate_proj.call(h)) * up_proj.call(h)), one);
        return x.MoveToOuterDisposeScope();
    }
}
