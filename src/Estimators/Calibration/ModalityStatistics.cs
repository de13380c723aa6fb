using Msavq.MLNet.Quantization;
using TorchSharp;
using static TorchSharp.torch;

namespace Msavq.MLNet.Calibration;

/// <summary>A layer's statistics as combined for quantization: A, b and G over one token set and normalization (§8.2).</summary>
/// <param name="A">Σ w x xᵀ / Σ w: the input factor of the quantization objective.</param>
/// <param name="B">Σ w δ_s² / Σ w: the output factor (diagonal).</param>
/// <param name="G">Σ w δ xᵀ / Σ w: the gradient.</param>
/// <param name="CurvatureA">Σ w ‖δ_s‖² x xᵀ / Σ w: inputs weighted by how much curvature their token carries.</param>
/// <param name="CurvatureB">Σ w δ_s² / Σ w ‖δ_s‖²: the output factor that pairs with <paramref name="CurvatureA"/>.</param>
public sealed record CombinedStatistics(Tensor A, Tensor B, Tensor G, Tensor CurvatureA, Tensor CurvatureB, double VisionWeight)
{
    /// <summary>The Kronecker factors (input, output diagonal) of the chosen second-order model.</summary>
    public (Tensor A, Tensor B) Factors(Curvature curvature) => curvature == Curvature.Fisher ? (CurvatureA, CurvatureB) : (A, B);
}

/// <summary>
/// One layer's calibration statistics kept apart by modality (algorithm.md §8.2): image tokens and text tokens each
/// accumulate A, b and G, plus Σ|δ| for the modality ratio r_ℓ = mean_vision|δ| / mean_text|δ| (MBQ, §7.5).
/// </summary>
public sealed class ModalityStatistics : IDisposable
{
    private double _imageAbsGrad, _textAbsGrad, _imageCurvature, _textCurvature;
    private readonly Tensor _imageCurvatureA, _textCurvatureA;
    private long _imageGradCount, _textGradCount;

    public ModalityStatistics(string layer, long inFeatures, long outFeatures, Device device)
        : this(layer, new LayerStatistics(inFeatures, outFeatures, device: device), new LayerStatistics(inFeatures, outFeatures, device: device))
    {
    }

    private ModalityStatistics(string layer, LayerStatistics image, LayerStatistics text)
    {
        Layer = layer;
        Image = image;
        Text = text;
        _imageCurvatureA = zeros(text.InFeatures, text.InFeatures, ScalarType.Float64, text.Device);
        _textCurvatureA = zeros(text.InFeatures, text.InFeatures, ScalarType.Float64, text.Device);
    }

    /// <summary>
    /// A single-modality layer whose statistics are given as moments (NumPy files, a synthetic layer): input factor A
    /// [n, n], and optionally the gradient G [m, n] and the output factor b [m] (ones when G comes alone).
    /// </summary>
    public static ModalityStatistics FromMoments(string layer, Tensor a, Tensor? g = null, Tensor? b = null, long? outFeatures = null)
    {
        long m = outFeatures ?? g?.shape[0] ?? b?.numel() ?? throw new ArgumentException("Give G, b or the number of outputs.");
        var s = new ModalityStatistics(layer, new LayerStatistics(a.shape[0], m, device: a.device), LayerStatistics.FromMoments(a, g, b, m));
        if (s.Text.GradientWeight > 0)
        {
            // One token set and one normalization for every factor (§8.2): the curvature pair is (A, b) itself.
            s._textCurvatureA.copy_(a.to(ScalarType.Float64));
            s._textCurvature = 1;
        }
        return s;
    }

    public string Layer { get; }
    public LayerStatistics Image { get; }
    public LayerStatistics Text { get; }
    public double ImageTokens => Image.InputWeight;
    public double TextTokens => Text.InputWeight;

    /// <summary>
    /// Adds one batch's tokens of one modality: inputs x [N, n] and, when known, output gradients δ [N, m] of the
    /// true-label loss and δ_s of the sampled-label loss (for the output factor b).
    /// </summary>
    public void Add(bool image, Tensor x, Tensor? delta, Tensor? sampledDelta = null)
    {
        if (x.shape[0] == 0) return;
        var s = image ? Image : Text;
        try
        {
            s.AddInputs(x);
            if (delta is null) return;
            s.AddOutputGradients(x, delta, curvatureDelta: sampledDelta);
        }
        catch (ArgumentException e)
        {
            throw new ArgumentException($"Layer '{Layer}': {e.Message}", e);
        }
        if (sampledDelta is not null)
        {
            // Weighted K-FAC input factor: Σ ‖δ_s‖² x xᵀ. Plain K-FAC pairs E[x xᵀ] over all tokens with E[δ δᵀ],
            // which mis-scales the Newton step by orders of magnitude when only a few tokens carry gradient.
            using var scope = NewDisposeScope();
            using var two = 2.ToScalar();   // explicit Scalars throughout (WeightedKMeans says why)
            var s2 = sampledDelta.to(ScalarType.Float64).pow(two).sum(dim: 1);
            var x64 = x.to(ScalarType.Float64);
            (image ? _imageCurvatureA : _textCurvatureA).addmm_((x64 * s2.unsqueeze(1)).t(), x64);
            if (image) _imageCurvature += s2.sum().item<double>(); else _textCurvature += s2.sum().item<double>();
        }
        double abs = delta.abs().sum().to(ScalarType.Float64).item<double>();
        if (image) { _imageAbsGrad += abs; _imageGradCount += delta.numel(); }
        else { _textAbsGrad += abs; _textGradCount += delta.numel(); }
    }

    /// <summary>Raw MBQ ratio mean_vision|δ| / mean_text|δ|; null when the layer saw only one modality.</summary>
    public double? RawModalityRatio =>
        _imageGradCount == 0 || _textGradCount == 0 || _textAbsGrad == 0
            ? null
            : (_imageAbsGrad / _imageGradCount) / (_textAbsGrad / _textGradCount);

    /// <summary>
    /// Statistics over all tokens with weight 1 for text and <paramref name="visionWeight"/> for image tokens:
    /// A = (Σ_text x xᵀ + r Σ_vision x xᵀ) / (N_text + r N_vision), and the same for b and G. Caller disposes.
    /// </summary>
    public CombinedStatistics Combine(double visionWeight)
    {
        using var scope = NewDisposeScope();
        double ni = Image.InputWeight * visionWeight, nt = Text.InputWeight;
        double gi = Image.GradientWeight * visionWeight, gt = Text.GradientWeight;
        double curvature = _imageCurvature * visionWeight + _textCurvature;
        using var one = 1.ToScalar();
        using var sNi = ni.ToScalar();
        using var sNt = nt.ToScalar();
        using var sGi = gi.ToScalar();
        using var sGt = gt.ToScalar();
        using var sR = visionWeight.ToScalar();
        using var inputs = Math.Max(ni + nt, double.Epsilon).ToScalar();
        using var gradients = Math.Max(gi + gt, double.Epsilon).ToScalar();
        using var toCurvature = ((gi + gt) / Math.Max(curvature, double.Epsilon)).ToScalar();
        // (image·r + text) / total, as (x * ni + y * nt) / n with explicit Scalars.
        Tensor Mix(Tensor image, Scalar wi, Tensor text, Scalar wt, Scalar total) => image.mul(wi).add(text.mul(wt), one).div(total);
        var a = Mix(Image.InputCovariance(), sNi, Text.InputCovariance(), sNt, inputs);
        var b = Mix(Image.OutputFactorDiagonal(), sGi, Text.OutputFactorDiagonal(), sGt, gradients);
        var g = Mix(Image.WeightGradient(), sGi, Text.WeightGradient(), sGt, gradients);
        var ca = _imageCurvatureA.mul(sR).add(_textCurvatureA, one).div(gradients);
        var cb = b.mul(toCurvature);
        return new CombinedStatistics(a.MoveToOuterDisposeScope(), b.MoveToOuterDisposeScope(), g.MoveToOuterDisposeScope(),
            ca.MoveToOuterDisposeScope(), cb.MoveToOuterDisposeScope(), visionWeight);
    }

    /// <summary>Modality affinity per input channel a_j = V_jj / (V_jj + T_jj) (§8.3); 0.5 where a channel is dead.</summary>
    public double[] ModalityAffinity()
    {
        using var scope = NewDisposeScope();
        var v = Image.InputCovariance().diagonal();
        var t = Text.InputCovariance().diagonal();
        using var one = 1.ToScalar();
        using var zero = 0.ToScalar();
        using var tiny = double.Epsilon.ToScalar();
        using var half = 0.5.ToScalar();
        var sum = v.add(t, one);
        var a = where(sum.gt(zero), v / sum.clamp_min(tiny), full_like(sum, half));
        return a.cpu().data<double>().ToArray();
    }

    public void Dispose() { Image.Dispose(); Text.Dispose(); _imageCurvatureA.Dispose(); _textCurvatureA.Dispose(); }
}
