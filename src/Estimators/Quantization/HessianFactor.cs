using TorchSharp;
using static TorchSharp.torch;

namespace Msavq.MLNet.Quantization;

/// <summary>Result of a damped Cholesky factorization: the factor, and how much damping it finally took.</summary>
public sealed record DampedCholesky(Tensor Lower, double RelativeDamping, int Retries);

/// <summary>Float64 Hessian preparation shared by every method (algorithm.md §2.2, §5.1, §10.1–10.2).</summary>
public static class HessianFactor
{
    /// <summary>
    /// GPTQ's dead-input rule: where diag(H) = 0 set H_jj = 1 and zero the weight column. Returns new tensors and
    /// the dead mask.
    /// </summary>
    public static (Tensor H, Tensor W, Tensor Dead) HandleDeadInputs(Tensor h, Tensor w)
    {
        // Explicit Scalars throughout (WeightedKMeans says why).
        using var zero = 0.ToScalar();
        using var zeroWeight = 0.0.ToScalar();
        var dead = h.diagonal().eq(zero);
        var hh = h.clone();
        var ww = w.clone();
        if (dead.any().item<bool>())
        {
            var idx = dead.nonzero().squeeze(1);
            hh.index_put_(ones_like(idx, ScalarType.Float64).to(hh.dtype), idx, idx);
            ww.index_fill_(1, idx, zeroWeight);
        }
        return (hh, ww, dead);
    }

    /// <summary>
    /// b floored at ε·mean(b), so diag(b)⁻¹ cannot blow up and no row's error is free (algorithm.md §8.2); float64.
    /// </summary>
    public static Tensor FloorOutputFactor(Tensor b, double epsilon = 1e-3)
    {
        var b64 = b.to(ScalarType.Float64);
        using var floor = (epsilon * Math.Max(b64.mean().item<double>(), double.Epsilon)).ToScalar();
        return b64.clamp_min(floor);
    }

    /// <summary>H + λ·mean(diag H)·I (a new tensor).</summary>
    public static Tensor Damp(Tensor h, double relativeDamping)
    {
        double mean = h.diagonal().mean().item<double>();
        if (!(mean > 0)) mean = 1; // an all-dead (or broken) Hessian: damp on an absolute scale
        using var one = 1.ToScalar();
        using var lambda = (relativeDamping * mean).ToScalar();
        return h.add(eye(h.shape[0], dtype: h.dtype, device: h.device).mul(lambda), one);
    }

    /// <summary>
    /// Lower Cholesky factor of H + λ·mean(diag)·I in float64, retrying with λ ×10 (up to <paramref name="maxRetries"/>
    /// times) when the matrix is not positive definite (algorithm.md §10.1).
    /// </summary>
    public static DampedCholesky Cholesky(Tensor h, double relativeDamping, int maxRetries = 6)
    {
        var h64 = h.to(ScalarType.Float64);
        if (!h64.isfinite().all().item<bool>()) throw new ArgumentException("The Hessian has non-finite entries.");
        double lambda = relativeDamping;
        for (int attempt = 0; attempt <= maxRetries; attempt++)
        {
            using var scope = NewDisposeScope();
            var (l, info) = linalg.cholesky_ex(Damp(h64, lambda), check_errors: false);
            if (info.item<int>() == 0 && l.isfinite().all().item<bool>())
                return new DampedCholesky(l.MoveToOuterDisposeScope(), lambda, attempt);
            lambda = lambda <= 0 ? 1e-6 : lambda * 10;
        }
        throw new InvalidOperationException(
            $"The Hessian stayed non-positive-definite after {maxRetries} retries (damping up to {lambda / 10:g} of mean diag).");
    }

    /// <summary>GPTQ's U: the upper Cholesky factor of H⁻¹ (H⁻¹ = UᵀU), from the lower factor of H (§2.2 step 3).</summary>
    public static Tensor UpperInverseCholesky(Tensor lowerOfH)
    {
        using var scope = NewDisposeScope();
        var hinv = cholesky_inverse(lowerOfH);
        return linalg.cholesky(hinv).mT.contiguous().MoveToOuterDisposeScope();
    }

    /// <summary>tr(E A Eᵀ) / tr(W A Wᵀ) with E = Ŵ − W: the layer proxy error, relative (architecture.md §8).</summary>
    public static double RelativeProxyError(Tensor w, Tensor wHat, Tensor a)
    {
        using var scope = NewDisposeScope();
        var w64 = w.to(ScalarType.Float64); var a64 = a.to(ScalarType.Float64);
        var e = wHat.to(ScalarType.Float64) - w64;
        double num = (e.matmul(a64) * e).sum().item<double>();
        double den = (w64.matmul(a64) * w64).sum().item<double>();
        return den > 0 ? num / den : num;
    }

    /// <summary>⟨G, ΔW⟩ + ½·tr(ΔW A ΔWᵀ diag b): the first- plus second-order loss model of §6.7 (one-sided).</summary>
    public static double LossModel(Tensor w, Tensor wHat, Tensor a, Tensor? g, Tensor? b)
    {
        using var scope = NewDisposeScope();
        var dw = wHat.to(ScalarType.Float64) - w.to(ScalarType.Float64);
        var rows = b is null ? dw : dw * b.to(ScalarType.Float64).unsqueeze(1);
        double quad = 0.5 * (rows.matmul(a.to(ScalarType.Float64)) * dw).sum().item<double>();
        double lin = g is null ? 0 : (g.to(ScalarType.Float64) * dw).sum().item<double>();
        return lin + quad;
    }
}
