using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;
using F = TorchSharp.torch.nn.functional;

namespace Msavq.MLNet.Models.Layers;

/// <summary>Pre-norm ViT block: LayerNorm → attention → residual, LayerNorm → GELU MLP (fc1, fc2) → residual.</summary>
public sealed class VisionBlock : nn.Module<Tensor, Tensor>
{
    private readonly LayerNorm norm1, norm2;
    private readonly SelfAttention attn;
    private readonly nn.Module<Tensor, Tensor> fc1, fc2;

    public VisionBlock(string name, int width, int heads, int mlp) : base(name)
    {
        norm1 = nn.LayerNorm(width);
        attn = new SelfAttention("attn", width, heads, causal: false, bias: true);
        norm2 = nn.LayerNorm(width);
        fc1 = nn.Linear(width, mlp);
        fc2 = nn.Linear(mlp, width);
        RegisterComponents();
    }

    public IEnumerable<Linear> ResidualOutputs => new[] { attn.Output, (Linear)fc2 };

    public override Tensor forward(Tensor x)
    {
        using var scope = NewDisposeScope();
        // a + b is add(b, alpha: 1) with an implicit Scalar: explicit here, as in RmsNorm.
        using var one = 1.ToScalar();
        x = x.add(attn.call(norm1.call(x)), one);
        x = x.add(fc2.call(F.gelu(fc1.call(norm2.call(x)))), one);
        return x.MoveToOuterDisposeScope();
    }
}

/// <summary>
/// ViT image encoder: a small convolutional stem (reference-vlm.md: a linear patchify collapsed), patch embedding
/// at <see cref="ShapesVlmConfig.PatchSize"/>, learned positions, pre-norm blocks, final LayerNorm.
/// Output: [B, patches, VisionWidth], patches in row-major order.
/// </summary>
public sealed class VisionEncoder : nn.Module<Tensor, Tensor>
{
    private readonly Conv2d stem1, stem2, patch_embed;
    private readonly Parameter pos_embed;
    private readonly ModuleList<VisionBlock> blocks;
    private readonly LayerNorm norm;

    public VisionEncoder(string name, ShapesVlmConfig c) : base(name)
    {
        stem1 = nn.Conv2d(3, 32, 3, padding: 1);
        stem2 = nn.Conv2d(32, 64, 3, stride: 2, padding: 1);
        int p = c.PatchSize / 2; // the stem halves the resolution
        patch_embed = nn.Conv2d(64, c.VisionWidth, p, stride: p);
        pos_embed = nn.Parameter(zeros(1, c.ImageTokens, c.VisionWidth));
        blocks = nn.ModuleList(Enumerable.Range(0, c.VisionLayers)
            .Select(i => new VisionBlock($"{i}", c.VisionWidth, c.VisionHeads, c.VisionMlp)).ToArray());
        norm = nn.LayerNorm(c.VisionWidth);
        RegisterComponents();
        using (no_grad()) Init.TruncatedNormal(pos_embed, 0.02);
    }

    public IEnumerable<VisionBlock> Blocks => blocks;

    public override Tensor forward(Tensor pixels)
    {
        using var scope = NewDisposeScope();
        using var one = 1.ToScalar();
        var h = F.gelu(stem1.call(pixels));
        h = F.gelu(stem2.call(h));
        h = patch_embed.call(h);                       // [B, W, g, g]
        var x = h.flatten(2).transpose(1, 2).add(pos_embed, one); // [B, g*g, W]
        foreach (var block in blocks) x = block.call(x);
        return norm.call(x).MoveToOuterDisposeScope();
    }
}
