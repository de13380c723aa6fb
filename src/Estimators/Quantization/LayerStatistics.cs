using TorchSharp;
using static TorchSharp.torch;

namespace Msavq.MLNet.Quantization;

/// <summary>
/// Streaming float64 accumulators of one Linear layer's calibration statistics (algorithm.md §8.2):
/// A = Σ w_t x_t x_tᵀ, the output-gradient factor b = Σ w_t δ_t² (or full B = Σ w_t δ_t δ_tᵀ), and
/// G = Σ w_t δ_t x_tᵀ, each divided by Σ w_t when read. Accumulators are created once and updated in place.
/// </summary>
public sealed class LayerStatistics : IDisposable
{
    private readonly Tensor _a, _b, _g;
    private readonly Tensor? _bFull;
    private double _inputWeight, _gradientWeight;

    public LayerStatistics(long inFeatures, long outFeatures, bool fullOutputFactor = false, Device? device = null)
    {
        InFeatures = inFeatures;
        OutFeatures = outFeatures;
        _a = zeros(inFeatures, inFeatures, ScalarType.Float64, device);
        _b = zeros(outFeatures, ScalarType.Float64, device);
        _g = zeros(outFeatures, inFeatures, ScalarType.Float64, device);
        if (fullOutputFactor) _bFull = zeros(outFeatures, outFeatures, ScalarType.Float64, device);
    }

    /// <summary>
    /// Statistics given as moments rather than tokens (a layer from NumPy files, a synthetic layer): A, and optionally
    /// b and G, as if one token of weight 1 had produced them.
    /// </summary>
    public static LayerStatistics FromMoments(Tensor a, Tensor? g, Tensor? b, long outFeatures)
    {
        long n = a.shape[0];
        if (a.dim() != 2 || a.shape[1] != n) throw new ArgumentException($"A must be square, got [{string.Join(", ", a.shape)}].");
        if (g is not null && (g.dim() != 2 || g.shape[0] != outFeatures || g.shape[1] != n))
            throw new ArgumentException($"G must be {outFeatures}×{n}, got [{string.Join(", ", g.shape)}].");
        if (b is not null && b.numel() != outFeatures) throw new ArgumentException($"b must have {outFeatures} entries, got {b.numel()}.");
        var s = new LayerStatistics(n, outFeatures, device: a.device);
        using var scope = NewDisposeScope();
        s._a.copy_(a.to(ScalarType.Float64));
        s._inputWeight = 1;
        if (g is not null || b is not null)
        {
            if (g is not null) s._g.copy_(g.to(ScalarType.Float64));
            s._b.copy_(b is null ? ones(outFeatures, ScalarType.Float64, a.device) : b.reshape(-1).to(ScalarType.Float64));
            s._gradientWeight = 1;
        }
        return s;
    }

    public Device Device => _a.device;
    public long InFeatures { get; }
    public long OutFeatures { get; }
    /// <summary>Σ w_t over the input tokens seen (the token count when all weights are 1).</summary>
    public double InputWeight => _inputWeight;
    public double GradientWeight => _gradientWeight;

    /// <summary>Adds input rows x [N, n] with optional token weights [N].</summary>
    public void AddInputs(Tensor x, Tensor? tokenWeights = null)
    {
        using var scope = NewDisposeScope();
        var x64 = Flatten(x, InFeatures, "inputs");
        CheckFinite(x64, "inputs");
        if (tokenWeights is null)
        {
            _a.addmm_(x64.t(), x64);
            _inputWeight += x64.shape[0];
        }
        else
        {
            var w = tokenWeights.reshape(-1).to(ScalarType.Float64).to(x64.device);
            _a.addmm_((x64 * w.unsqueeze(1)).t(), x64);
            _inputWeight += w.sum().item<double>();
        }
    }

    /// <summary>
    /// Adds output gradients δ [N, m] with the matching inputs x [N, n] and optional token weights. G takes δ; the
    /// output factor b (and B) takes <paramref name="curvatureDelta"/> when given — gradients of the loss at labels
    /// sampled from the model (true Fisher), which stay informative where the true-label δ vanishes on a fitted model.
    /// </summary>
    public void AddOutputGradients(Tensor x, Tensor delta, Tensor? tokenWeights = null, Tensor? curvatureDelta = null)
    {
        using var scope = NewDisposeScope();
        var x64 = Flatten(x, InFeatures, "inputs");
        var d64 = Flatten(delta, OutFeatures, "output gradients");
        if (x64.shape[0] != d64.shape[0])
            throw new ArgumentException($"{x64.shape[0]} input rows but {d64.shape[0]} gradient rows.");
        CheckFinite(d64, "output gradients");
        var c64 = curvatureDelta is null ? d64 : Flatten(curvatureDelta, OutFeatures, "curvature gradients");
        if (curvatureDelta is not null) CheckFinite(c64, "curvature gradients");
        var w = tokenWeights?.reshape(-1).to(ScalarType.Float64).to(x64.device);
        var dw = w is null ? d64 : d64 * w.unsqueeze(1);
        var cw = w is null ? c64 : c64 * w.unsqueeze(1);
        _g.addmm_(dw.t(), x64);
        using var one = 1.ToScalar();   // explicit Scalars throughout (WeightedKMeans says why)
        _b.add_((cw * c64).sum(dim: 0), one);
        _bFull?.addmm_(cw.t(), c64);
        _gradientWeight += w is null ? d64.shape[0] : w.sum().item<double>();
    }

    /// <summary>A = Σ w x xᵀ / Σ w, [n, n] float64 (a new tensor).</summary>
    public Tensor InputCovariance() => Divide(_a, _inputWeight);
    /// <summary>b = Σ w δ² / Σ w, [m].</summary>
    public Tensor OutputFactorDiagonal() => Divide(_b, _gradientWeight);
    /// <summary>B = Σ w δ δᵀ / Σ w, [m, m]; null unless requested at construction.</summary>
    public Tensor? OutputFactor() => _bFull is null ? null : Divide(_bFull, _gradientWeight);
    /// <summary>G = Σ w δ xᵀ / Σ w, [m, n]: the weight gradient of the calibration loss.</summary>
    public Tensor WeightGradient() => Divide(_g, _gradientWeight);

    private static Tensor Divide(Tensor sum, double weight)
    {
        using var w = Math.Max(weight, double.Epsilon).ToScalar();
        return sum.div(w);
    }

    private static Tensor Flatten(Tensor t, long width, string what)
    {
        if (t.shape[^1] != width) throw new ArgumentException($"{what} have width {t.shape[^1]}, expected {width}.");
        return t.reshape(-1, width).to(ScalarType.Float64);
    }

    private static void CheckFinite(Tensor t, string what)
    {
        if (!t.isfinite().all().item<bool>()) throw new ArgumentException($"Non-finite values in the {what}.");
    }

    public void Dispose()
    {
        _a.Dispose(); _b.Dispose(); _g.Dispose(); _bFull?.Dispose();
    }
}
