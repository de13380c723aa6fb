using TorchSharp;
using static TorchSharp.torch;

namespace Msavq.MLNet.Quantization;

/// <summary>Options of the Newton shift W* = W − β·B⁻¹·G·A⁻¹ (algorithm.md §6.1, §6.7, §8.4 step 1).</summary>
public sealed record GradientShiftOptions
{
    /// <summary>Trust factor β ∈ (0, 1]: the K-FAC step is mis-scaled (§8.2), so it is damped.</summary>
    public double Beta { get; init; } = 0.3;
    /// <summary>λ_A as a fraction of mean(diag A).</summary>
    public double InputDamping { get; init; } = 0.01;
    /// <summary>λ_B as a fraction of mean(diag B) (two-sided form).</summary>
    public double OutputDamping { get; init; } = 0.01;
    /// <summary>b is floored at ε·mean(b) so diag(b)⁻¹ cannot blow up (§8.2).</summary>
    public double OutputFloor { get; init; } = 1e-3;
}

/// <summary>
/// The gradient-aware target: minimizing ⟨G,ΔW⟩ + ½ tr(ΔW A ΔWᵀ B) sequentially equals GPTQ/LDLQ on the shifted
/// W* = W − B⁻¹ G A⁻¹ (§6.1 key identity). Solves use Cholesky factors in float64, never explicit inverses.
/// </summary>
public static class GradientShift
{
    /// <summary>One-sided: W* = W − β·diag(b)⁻¹·G·A_λ⁻¹ (b null means B = I).</summary>
    public static Tensor OneSided(Tensor w, Tensor g, Tensor a, Tensor? b, GradientShiftOptions o)
    {
        using var scope = NewDisposeScope();
        using var beta = o.Beta.ToScalar();   // explicit Scalar (WeightedKMeans says why)
        var step = SolveRight(g.to(ScalarType.Float64), a, o.InputDamping);       // G A⁻¹
        if (b is not null)
        {
            step = step / HessianFactor.FloorOutputFactor(b, o.OutputFloor).unsqueeze(1);
        }
        return (w - step.mul(beta).to(w.dtype)).MoveToOuterDisposeScope();
    }

    /// <summary>Two-sided Kronecker form: W* = W − β·B_λ⁻¹·G·A_λ⁻¹.</summary>
    public static Tensor Kronecker(Tensor w, Tensor g, Tensor a, Tensor bFull, GradientShiftOptions o)
    {
        using var scope = NewDisposeScope();
        var lb = HessianFactor.Cholesky(bFull, o.OutputDamping).Lower;
        var left = cholesky_solve(g.to(ScalarType.Float64), lb);                   // B⁻¹ G
        var step = SolveRight(left, a, o.InputDamping);                           // (B⁻¹ G) A⁻¹
        using var beta = o.Beta.ToScalar();
        return (w - step.mul(beta).to(w.dtype)).MoveToOuterDisposeScope();
    }

    /// <summary>
    /// The factor applied to a Newton step S: min(β, τ·‖E‖_A / ‖S‖_A) with ‖X‖_A² = tr(X A Xᵀ) and E a reference
    /// quantization error — a trust region that keeps the shift within τ times the error it is meant to steer.
    /// </summary>
    public static double TrustScale(Tensor step, Tensor referenceError, Tensor a, double beta, double trustRatio)
    {
        using var scope = NewDisposeScope();
        var a64 = a.to(ScalarType.Float64);
        double Norm(Tensor x) { var x64 = x.to(ScalarType.Float64); return Math.Sqrt(Math.Max(0, (x64.matmul(a64) * x64).sum().item<double>())); }
        double s = Norm(step), e = Norm(referenceError);
        return s > 0 ? Math.Min(beta, trustRatio * e / s) : 0;
    }

    /// <summary>X·A_λ⁻¹ for symmetric A: (A_λ⁻¹ Xᵀ)ᵀ by a Cholesky solve.</summary>
    private static Tensor SolveRight(Tensor x, Tensor a, double damping)
    {
        var la = HessianFactor.Cholesky(a, damping).Lower;
        return cholesky_solve(x.t(), la).t();
    }
}
