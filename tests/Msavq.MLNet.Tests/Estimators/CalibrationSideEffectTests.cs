using Microsoft.ML;
using Msavq.MLNet.Calibration;
using Msavq.MLNet.Models;
using Msavq.MLNet.Tests.Models;
using static TorchSharp.torch;

namespace Msavq.MLNet.Tests.Estimators;

/// <summary>Calibration reads the caller's model and leaves it as it was (issue 16.1).</summary>
[TestClass]
public sealed class CalibrationSideEffectTests
{
    private sealed record ParameterState(string Name, float[] Values, bool RequiresGrad, float[]? Grad);

    private static List<ParameterState> Snapshot(ShapesVlm model) => model.named_parameters()
        .Select(p => new ParameterState(p.name, p.parameter.detach().cpu().data<float>().ToArray(), p.parameter.requires_grad,
            p.parameter.grad is { } g ? g.detach().cpu().data<float>().ToArray() : null))
        .ToList();

    private static void AssertUnchanged(List<ParameterState> before, List<ParameterState> after, string when)
    {
        Assert.HasCount(before.Count, after);
        for (int i = 0; i < before.Count; i++)
        {
            var (b, a) = (before[i], after[i]);
            Assert.AreEqual(b.Name, a.Name, when);
            Assert.IsTrue(b.Values.AsSpan().SequenceEqual(a.Values), $"{when}: {b.Name} changed");
            Assert.AreEqual(b.RequiresGrad, a.RequiresGrad, $"{when}: {b.Name}.requires_grad changed");
            if (b.Grad is null) Assert.IsNull(a.Grad, $"{when}: {b.Name}.grad was set");
            else Assert.IsTrue(a.Grad is not null && b.Grad.AsSpan().SequenceEqual(a.Grad), $"{when}: {b.Name}.grad changed");
        }
    }

    [TestMethod]
    public void Fit_LeavesEveryParameter_ItsGrad_AndItsFlag_AsTheyWere_FitAfterFit()
    {
        var ml = new MLContext(0);
        using var model = TinyVlm.Create(4);
        var parameters = model.named_parameters().ToList();
        // A caller's model mid-experiment: one parameter frozen, one carrying a gradient of its own.
        parameters[0].parameter.requires_grad = false;
        parameters[1].parameter.sum().backward();
        var before = Snapshot(model);
        Assert.AreEqual(1, before.Count(p => p.Grad is not null));
        for (int fit = 1; fit <= 2; fit++)
        {
            using var fitted = TinyChain.Fit(ml, QuantizationMethod.Rtn, 3.5, model, CalibrationMode.Sequential);
            AssertUnchanged(before, Snapshot(model), $"after fit {fit}");
        }
    }

    [TestMethod]
    public void Fit_OfAFullyFrozenModel_StillGetsGradients_AndLeavesItFrozen()
    {
        var ml = new MLContext(0);
        using var model = TinyVlm.Create(4);
        foreach (var p in model.parameters()) p.requires_grad = false;
        var before = Snapshot(model);
        var data = TinyChain.Calibration(ml);
        var calibration = ml.Msavq().CollectCalibration(new CalibrationCollector.Options
        {
            Model = model, BatchSize = 8, Roles = new[] { LayerRole.Language },
        }).Fit(data);
        var layer = calibration.Result.Layers[0].Name;
        Assert.IsTrue(calibration.Result.Statistics[layer].Text.WeightGradient().abs().max().item<double>() > 0, "G is not zero");
        AssertUnchanged(before, Snapshot(model), "after calibration");
    }
}
