using Msavq.MLNet.Quantization;
using static TorchSharp.torch;

namespace Msavq.MLNet.Tests.Quantization;

/// <summary>The identities of algorithm.md §8.6 (ports of ../shared/design/checks/*.py), in float64.</summary>
[TestClass]
public sealed class IdentityTests
{
    private const int N = 12, M = 5, D = 3;

    private static (Tensor H, Tensor W, Tensor G, Tensor C) Problem(ulong seed, int codewords = 16)
    {
        var g = Mat.Rng(seed);
        var h = Mat.Spd(N, 40, 0.05, g);
        var w = Mat.Randn(M, N, g);
        var grad = 0.3 * Mat.Randn(M, N, g);
        var c = Mat.Randn(codewords, D, g);
        return (h, w, grad, c);
    }

    /// <summary>Nearest codeword per row (Euclidean), as the checks' vq().</summary>
    private static Tensor Vq(Tensor v, Tensor c)
    {
        var dist = (v.unsqueeze(1) - c.unsqueeze(0)).pow(2).sum(-1);
        return c.index_select(0, dist.argmin(1));
    }

    /// <summary>Exact block GPTQ in forward order with a fixed codebook (checks' block_gptq).</summary>
    private static Tensor BlockGptq(Tensor w, Tensor h, Tensor c)
    {
        w = w.clone();
        var q = zeros_like(w);
        var u = HessianFactor.UpperInverseCholesky(linalg.cholesky(h));
        long n = w.shape[1];
        for (int s = 0; s < n; s += D)
        {
            var qb = Vq(w[.., s..(s + D)], c);
            q[.., s..(s + D)] = qb;
            if (s + D < n)
            {
                // E = (W_Q − Q)·U_QQ⁻¹ via a triangular solve: E·U_QQ = (W_Q − Q).
                var e = linalg.solve_triangular(u[s..(s + D), s..(s + D)], w[.., s..(s + D)] - qb, upper: true, left: false);
                w[.., (s + D)..] -= e.matmul(u[s..(s + D), (s + D)..]);
            }
        }
        return q;
    }

    /// <summary>Gradient-aware sequential block OBS by brute force (checks' seq_block_obs).</summary>
    private static Tensor SequentialBlockObs(Tensor w0, Tensor g, Tensor h, Tensor c)
    {
        var w = w0.clone();
        var q = zeros_like(w);
        long n = w.shape[1];
        for (int s = 0; s < n; s += D)
        {
            var hr = h[s.., s..];
            var gr = g[.., s..] + (w[.., s..] - w0[.., s..]).matmul(hr) + (w[.., ..s] - w0[.., ..s]).matmul(h[..s, s..]);
            var t = w[.., s..] - gr.matmul(linalg.inv(hr));
            var qb = Vq(t[.., ..D], c);
            q[.., s..(s + D)] = qb;
            w[.., s..(s + D)] = qb;
            if (s + D < n)
            {
                var gf = g[.., (s + D)..] + (w[.., ..(s + D)] - w0[.., ..(s + D)]).matmul(h[..(s + D), (s + D)..]);
                w[.., (s + D)..] = w0[.., (s + D)..] - gf.matmul(linalg.inv(h[(s + D).., (s + D)..]));
            }
        }
        return q;
    }

    [TestMethod]
    public void InverseCholesky_TrailingBlockIsTheInverseOfTheTrailingHessian()
    {
        var (h, _, _, _) = Problem(0);
        var u = HessianFactor.UpperInverseCholesky(linalg.cholesky(h));
        Mat.AssertClose(u.tril(-1), zeros(N, N, ScalarType.Float64), 0, "U is upper triangular");
        Mat.AssertClose(u.t().matmul(u), linalg.inv(h), 1e-10, "H⁻¹ = UᵀU");
        var uff = u[4.., 4..];
        Mat.AssertClose(uff.t().matmul(uff), linalg.inv(h[4.., 4..]), 1e-10, "U_FFᵀU_FF = inv(H_FF)");
    }

    [TestMethod]
    public void GradientAwareSequentialObs_EqualsBlockGptqOnTheNewtonShiftedTarget()
    {
        var (h, w, g, c) = Problem(0);
        var shifted = GradientShift.OneSided(w, g, h, null, new GradientShiftOptions { Beta = 1, InputDamping = 0 });
        Mat.AssertClose(shifted, w - g.matmul(linalg.inv(h)), 1e-10, "W* = W − G H⁻¹");
        var obs = SequentialBlockObs(w, g, h, c);
        var gptq = BlockGptq(shifted, h, c);
        Assert.IsTrue(obs.eq(gptq).all().item<bool>(), "identical codes");
    }

    [TestMethod]
    public void GradientAwareReverseObs_EqualsLibraryShiftPlusBlockLdlq()
    {
        // The library path (GradientShift + BlockLdlq, reverse block order) against brute-force gradient-aware OBS
        // run on the block-reversed problem.
        var (h, w, g, c) = Problem(1);
        var p = Mat.BlockPermutation(N, D);
        var inv = p.argsort();
        var obs = SequentialBlockObs(w.index_select(1, p), g.index_select(1, p), h.index_select(0, p).index_select(1, p), c)
            .index_select(1, inv);
        var shifted = GradientShift.OneSided(w, g, h, null, new GradientShiftOptions { Beta = 1, InputDamping = 0 });
        var layout = new VqLayout(D, M, N);
        using var vq = BlockLdlq.Quantize(shifted, h, null, new BlockLdlqOptions
        {
            Layout = layout, RelativeDamping = 0, FixedCodebook = c, EuclideanAssignment = true,
            Precision = CodebookPrecision.Float32,
        });
        Mat.AssertClose(vq.Dequantize(), obs, 1e-12, "same codewords");
    }

    [TestMethod]
    public void ExactBlockUpdate_MatchesBruteForce_AndTheDiagonalOneDoesNot()
    {
        var (h, w, _, c) = Problem(0);
        var u = HessianFactor.UpperInverseCholesky(linalg.cholesky(h));
        var e0 = w[.., ..D] - Vq(w[.., ..D], c);
        var exact = linalg.solve_triangular(u[..D, ..D], e0, upper: true, left: false).matmul(u[..D, D..]);
        var diagonal = (e0 / u.diagonal()[..D]).matmul(u[..D, D..]);
        var brute = -e0.matmul(h[..D, D..]).matmul(linalg.inv(h[D.., D..]));
        // W_F_new = W_F − update; the OBS optimum of the free weights given the quantized block is W_F + E H_QF H_FF⁻¹.
        Mat.AssertClose(exact, brute, 1e-10, "exact block update");
        Assert.IsGreaterThan(1e-3, (diagonal - brute).abs().max().item<double>(), "GPTVQ's diagonal update is an approximation");
    }

    [TestMethod]
    public void BlockLdl_ReconstructsTheHessian_WithIdentityDiagonalBlocks()
    {
        var (h, _, _, _) = Problem(0);
        var f = BlockLdl.FromCholesky(linalg.cholesky(h), D);
        Mat.AssertClose(f.L.matmul(f.DenseD()).matmul(f.L.t()), h, 1e-10, "L D Lᵀ = H");
        for (int k = 0; k < N; k += D)
            Mat.AssertClose(f.L[k..(k + D), k..(k + D)], eye(D, dtype: ScalarType.Float64), 0, $"L block {k}");
        Mat.AssertClose(f.L.triu(1), zeros(N, N, ScalarType.Float64), 1e-12, "L is lower");
    }

    [TestMethod]
    public void BlockLdlq_EqualsExactBlockGptqInReverseBlockOrder()
    {
        var (h, w, _, c) = Problem(0);
        var p = Mat.BlockPermutation(N, D);
        var expected = BlockGptq(w.index_select(1, p), h.index_select(0, p).index_select(1, p), c).index_select(1, p.argsort());
        using var vq = BlockLdlq.Quantize(w, h, null, new BlockLdlqOptions
        {
            Layout = new VqLayout(D, M, N), RelativeDamping = 0, FixedCodebook = c, EuclideanAssignment = true,
            Precision = CodebookPrecision.Float32,
        });
        Mat.AssertClose(vq.Dequantize(), expected, 1e-12, "BlockLDLQ(reverse) = block GPTQ (reverse)");
    }

    [TestMethod]
    public void BlockLdlq_LossDecomposesOverBlocks()
    {
        // ldlq_decomp.py: tr(E H Eᵀ) = Σ_k (Ŵ_k − T_k) D_k (Ŵ_k − T_k)ᵀ with the D_k-weighted choice.
        var g = Mat.Rng(3);
        int n = 12, m = 5, d = 4;
        var h = Mat.Spd(n, 40, 0.05, g);
        var w = Mat.Randn(m, n, g);
        var c = Mat.Randn(32, d, g);
        using var vq = BlockLdlq.Quantize(w, h, null, new BlockLdlqOptions
        {
            Layout = new VqLayout(d, m, n), RelativeDamping = 0, FixedCodebook = c, Precision = CodebookPrecision.Float32,
        });
        var what = vq.Dequantize();
        var f = BlockLdl.FromCholesky(linalg.cholesky(h), d);
        var lm = f.L - eye(n, dtype: ScalarType.Float64);
        double total = 0;
        for (int k = n - d; k >= 0; k -= d)
        {
            var t = w[.., k..(k + d)] + (w[.., (k + d)..] - what[.., (k + d)..]).matmul(lm[(k + d).., k..(k + d)]);
            var e = what[.., k..(k + d)] - t;
            total += (e.matmul(f.D[k / d]) * e).sum().item<double>();
            // The chosen codeword is the D_k-weighted nearest one.
            var diff = t.unsqueeze(1) - c.unsqueeze(0);
            var cost = (diff.matmul(f.D[k / d]) * diff).sum(-1);
            Mat.AssertClose(what[.., k..(k + d)], c.index_select(0, cost.argmin(1)), 0, $"block {k}");
        }
        var err = what - w;
        Assert.AreEqual((err.matmul(h) * err).sum().item<double>(), total, 1e-9);
    }

    [TestMethod]
    public void KroneckerNewtonShift_EqualsASolveWithTheKroneckerProduct()
    {
        var (a, _, g, _) = Problem(0);
        var gen = Mat.Rng(9);
        var y = Mat.Randn(M, 30, gen);
        var b = y.matmul(y.t()) / 30 + eye(M, dtype: ScalarType.Float64) * 0.1;
        var w = zeros(M, N, ScalarType.Float64);
        var shifted = GradientShift.Kronecker(w, g, a, b, new GradientShiftOptions { Beta = 1, InputDamping = 0, OutputDamping = 0 });
        // Column-major vec: vec(ΔW)ᵀ (A ⊗ B) vec(ΔW) = tr(ΔW A ΔWᵀ B); the minimizer solves (A ⊗ B) vec(ΔW) = −vec(G).
        var k = kron(a, b);
        var vecG = g.t().reshape(-1);
        var dstar = -linalg.solve(k, vecG).reshape(N, M).t();
        Mat.AssertClose(shifted, dstar, 1e-10, "W* − W = −B⁻¹ G A⁻¹");
        var dw = Mat.Randn(M, N, gen);
        var vec = dw.t().reshape(-1);
        Assert.AreEqual(vec.dot(k.matmul(vec)).item<double>(), dw.matmul(a).matmul(dw.t()).matmul(b).trace().item<double>(), 1e-9);
    }

    [TestMethod]
    public void AfterUndampedSteps_GradientOnFreeColumnsVanishes_AndDampingBreaksIt()
    {
        // grad_after_obs.py
        var gen = Mat.Rng(1);
        int n = 10, m = 4, k = 3;
        var x = Mat.Randn(n, 30, gen);
        var h = x.matmul(x.t()) / 30;
        var w0 = Mat.Randn(m, n, gen);
        double FreeGradient(double damp)
        {
            var u = HessianFactor.UpperInverseCholesky(HessianFactor.Cholesky(h, damp).Lower);
            var w = w0.clone();
            for (int c = 0; c <= k; c++)
            {
                var e = (w[.., c] - (w[.., c] * 2).round() / 2) / u[c, c];
                w[.., c..] -= e.unsqueeze(1).matmul(u[c, c..].unsqueeze(0));
            }
            return ((w - w0).matmul(h))[.., (k + 1)..].abs().max().item<double>();
        }
        Assert.IsLessThan(1e-12, FreeGradient(0));
        Assert.IsGreaterThan(1e-4, FreeGradient(0.01));
        Assert.IsGreaterThan(FreeGradient(0.01), FreeGradient(0.1));
    }
}
