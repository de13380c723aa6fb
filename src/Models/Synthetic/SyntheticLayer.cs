using static TorchSharp.torch;

namespace Msavq.MLNet.Synthetic;

/// <summary>
/// The documented synthetic layer of the engine benchmarks. Inputs X = S·M·diag(s) with S ~ N(0,1) [N, n],
/// M ~ N(0, 1/n) [n, n] (mixing: correlated features) and s = exp(N(0,1)) (heavy-tailed channel scales, like LLM
/// activations); W ~ N(0, 1/n) [m, n]; output gradients δ = X·Wᵀ·R/√m + 0.5·N(0,1) with R ~ N(0,1) [m, m]
/// (correlated with the inputs, so G = δᵀX/N ≠ 0). A = XᵀX/N, b = mean δ², G = δᵀX/N. Seeded, float64.
/// </summary>
public sealed record SyntheticLayer(Tensor W, Tensor A, Tensor G, Tensor B)
{
    public static SyntheticLayer Create(int m, int n, int samples, ulong seed)
    {
        using var g = new Generator(seed);
        var mix = randn(n, n, ScalarType.Float64, generator: g) / Math.Sqrt(n);
        var scales = exp(randn(n, ScalarType.Float64, generator: g));
        var w = randn(m, n, ScalarType.Float64, generator: g) / Math.Sqrt(n);
        var r = randn(m, m, ScalarType.Float64, generator: g) / Math.Sqrt(m);
        var a = zeros(n, n, ScalarType.Float64);
        var gr = zeros(m, n, ScalarType.Float64);
        var b = zeros(m, ScalarType.Float64);
        const int chunk = 2048;
        for (int s0 = 0; s0 < samples; s0 += chunk)
        {
            using var scope = NewDisposeScope();
            int rows = Math.Min(chunk, samples - s0);
            var x = randn(rows, n, ScalarType.Float64, generator: g).matmul(mix) * scales;
            var delta = x.matmul(w.t()).matmul(r) / Math.Sqrt(m) + 0.5 * randn(rows, m, ScalarType.Float64, generator: g);
            a.addmm_(x.t(), x);
            gr.addmm_(delta.t(), x);
            b.add_((delta * delta).sum(dim: 0));
        }
        return new SyntheticLayer(w, a / samples, gr / samples, b / samples);
    }
}
