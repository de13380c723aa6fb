using TorchSharp;
using static TorchSharp.torch;

namespace Msavq.MLNet.Models.Layers;

internal static class Init
{
    /// <summary>
    /// N(0, std²) clipped at ±2·std, in place. (TorchSharp 0.107's <c>nn.init.trunc_normal_</c> with these bounds
    /// left the tensor all zeros; a test pins the spread of the initial weights.)
    /// </summary>
    public static void TruncatedNormal(Tensor t, double std)
    {
        using var _ = no_grad();
        using var low = (-2 * std).ToScalar();   // explicit Scalars, as in RmsNorm
        using var high = (2 * std).ToScalar();
        t.normal_(0, std).clamp_(low, high);
    }
}
