using static TorchSharp.torch;

namespace Msavq.MLNet.Tests.Quantization;

/// <summary>Small float64 problems for the identity tests (the NumPy checks' setups).</summary>
internal static class Mat
{
    public static Generator Rng(ulong seed) => new(seed);

    /// <summary>H = X Xᵀ / N + ridge·I with X ~ N(0,1) [n, N].</summary>
    public static Tensor Spd(long n, long samples, double ridge, Generator g)
    {
        var x = randn(n, samples, ScalarType.Float64, generator: g);
        return x.matmul(x.t()) / samples + eye(n, dtype: ScalarType.Float64) * ridge;
    }

    public static Tensor Randn(long r, long c, Generator g) => randn(r, c, ScalarType.Float64, generator: g);

    /// <summary>Inputs with correlated features (a random mixing of i.i.d. sources plus a few strong directions).</summary>
    public static Tensor CorrelatedHessian(long n, long samples, Generator g)
    {
        var mix = randn(n, n, ScalarType.Float64, generator: g) / Math.Sqrt(n);
        var scales = exp(randn(n, ScalarType.Float64, generator: g));            // heavy-tailed feature scales
        var s = randn(samples, n, ScalarType.Float64, generator: g);
        var x = s.matmul(mix) * scales;
        return x.t().matmul(x) / samples;
    }

    public static void AssertClose(Tensor a, Tensor b, double tol, string what)
    {
        double diff = (a - b).abs().max().item<double>();
        Assert.IsTrue(diff <= tol, $"{what}: max |diff| = {diff:g3} > {tol:g3}");
    }

    public static Tensor BlockPermutation(long n, int d) =>
        tensor(Enumerable.Range(0, (int)(n / d)).Reverse().SelectMany(k => Enumerable.Range(k * d, d)).Select(i => (long)i).ToArray());
}
