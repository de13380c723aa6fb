using Msavq.MLNet.Quantization;
using static TorchSharp.torch;

namespace Msavq.MLNet.Tests.Quantization;

[TestClass]
public sealed class StatisticsTests
{
    [TestMethod]
    public void Accumulators_StreamedInBatches_EqualTheDirectFormulas()
    {
        var g = Mat.Rng(1);
        var x = randn(100, 8, ScalarType.Float32, generator: g);
        var delta = randn(100, 5, ScalarType.Float32, generator: g);
        var w = rand(100, ScalarType.Float32, generator: g);
        using var s = new LayerStatistics(8, 5, fullOutputFactor: true);
        for (int i = 0; i < 100; i += 30)
        {
            int j = Math.Min(i + 30, 100);
            s.AddInputs(x[i..j], w[i..j]);
            s.AddOutputGradients(x[i..j], delta[i..j], w[i..j]);
        }
        var x64 = x.to(ScalarType.Float64); var d64 = delta.to(ScalarType.Float64); var w64 = w.to(ScalarType.Float64);
        double ws = w64.sum().item<double>();
        Mat.AssertClose(s.InputCovariance(), (x64 * w64.unsqueeze(1)).t().matmul(x64) / ws, 1e-12, "A");
        Mat.AssertClose(s.WeightGradient(), (d64 * w64.unsqueeze(1)).t().matmul(x64) / ws, 1e-12, "G");
        Mat.AssertClose(s.OutputFactorDiagonal(), (d64 * d64 * w64.unsqueeze(1)).sum(dim: 0) / ws, 1e-12, "b");
        Mat.AssertClose(s.OutputFactor()!, (d64 * w64.unsqueeze(1)).t().matmul(d64) / ws, 1e-12, "B");
        Assert.AreEqual(ws, s.InputWeight, 1e-9);
    }

    [TestMethod]
    public void Accumulators_RejectNonFiniteInputs()
    {
        using var s = new LayerStatistics(3, 2);
        var x = tensor(new float[] { 1, float.NaN, 0 }).reshape(1, 3);
        var e = Assert.ThrowsExactly<ArgumentException>(() => s.AddInputs(x));
        StringAssert.Contains(e.Message, "Non-finite");
    }

    [TestMethod]
    public void Cholesky_RetriesWithMoreDampingAndReportsIt()
    {
        var v = randn(6, 1, ScalarType.Float64, generator: Mat.Rng(2));
        var h = v.matmul(v.t());                      // rank 1: not positive definite without damping
        h[0, 0] = h[0, 0] * 0.5;                      // and now indefinite
        var f = HessianFactor.Cholesky(h, 1e-3);
        Assert.IsGreaterThan(0, f.Retries);
        Assert.IsGreaterThan(1e-3, f.RelativeDamping);
        Assert.IsTrue(f.Lower.isfinite().all().item<bool>());
    }

    [TestMethod]
    public void DeadInputs_AreHandledAsGptqDoes()
    {
        var g = Mat.Rng(3);
        var h = Mat.Spd(5, 20, 0, g);
        h[2, ..] = 0; h[.., 2] = 0;
        var w = Mat.Randn(3, 5, g);
        var (hh, ww, dead) = HessianFactor.HandleDeadInputs(h, w);
        Assert.AreEqual(1.0, hh[2, 2].item<double>());
        Assert.AreEqual(0.0, ww[.., 2].abs().sum().item<double>());
        Assert.IsTrue(dead[2].item<bool>());
        Assert.AreEqual(1L, dead.sum().item<long>());
    }
}
