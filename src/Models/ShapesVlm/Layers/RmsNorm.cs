using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace Msavq.MLNet.Models.Layers;

/// <summary>Root-mean-square layer norm with a learned gain (no mean subtraction, no bias).</summary>
public sealed class RmsNorm : nn.Module<Tensor, Tensor>
{
    private readonly Parameter weight;
    private readonly double _eps;

    public RmsNorm(string name, int width, double eps = 1e-6) : base(name)
    {
        weight = nn.Parameter(ones(width));
        _eps = eps;
        RegisterComponents();
    }

    public override Tensor forward(Tensor x)
    {
        using var scope = NewDisposeScope();
        // No implicit Scalars: TorchSharp leaves the ones that operators (`+ double`, pow, square) create to the
        // finalizer, which can free one while libtorch still reads it (seen under allocation-heavy callers as
        // "toFloat"/"Scalar.h" errors). The explicit ones live to the end of the call; `add(eps)` alone is
        // `add(eps, alpha: 1)` with an implicit alpha, hence `one`.
        using var eps = _eps.ToScalar();
        using var one = 1.ToScalar();
        var y = x * rsqrt((x * x).mean(new long[] { -1 }, keepdim: true).add(eps, one)) * weight;
        return y.MoveToOuterDisposeScope();
    }
}
