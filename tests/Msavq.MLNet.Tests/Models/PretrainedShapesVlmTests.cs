using Msavq.MLNet.Data;
using Msavq.MLNet.Models;

namespace Msavq.MLNet.Tests.Models;

/// <summary>The checkpoint shipped inside Msavq.MLNet.Transforms: it loads with one call and still answers.</summary>
[TestClass]
public sealed class PretrainedShapesVlmTests
{
    [TestMethod]
    public void LoadPretrained_AnswersTestQuestionsFarAboveTheQuestionOnlyBaseline()
    {
        using var model = ShapesVlm.LoadPretrained();
        var test = new ShapesVqaGenerator(ShapesVqa.SeedOf(ShapesVqaSplit.Test)).Take(600).ToList();
        var result = VqaEvaluator.Evaluate(model, test);
        var baseline = new QuestionOnlyBaseline(new ShapesVqaGenerator(ShapesVqa.SeedOf(ShapesVqaSplit.Train)).Take(6000));
        double prior = test.Average(e => baseline.Predict(e.Question, e.Family) == e.Answer ? 1.0 : 0.0);
        string detail = string.Join(", ", result.FamilyAccuracy.Select(kv => $"{kv.Key} {kv.Value:P1}"));
        Assert.IsGreaterThanOrEqualTo(0.92, result.Accuracy, detail);
        Assert.IsGreaterThan(prior + 0.4, result.Accuracy, $"question-only {prior:P1}");
        Assert.HasCount(Enum.GetValues<QuestionFamily>().Length, result.FamilyAccuracy);
        // Every family, spatial relations included, is ≥ 99 % on the 2,400 questions of bench/RESULTS.md.
        foreach (var (family, accuracy) in result.FamilyAccuracy)
            Assert.IsGreaterThanOrEqualTo(0.95, accuracy, $"{family}: {detail}");
    }
}
