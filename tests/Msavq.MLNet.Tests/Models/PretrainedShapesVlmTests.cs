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
        Assert.IsGreaterThanOrEqualTo(0.85, result.Accuracy, detail);
        Assert.IsGreaterThan(prior + 0.4, result.Accuracy, $"question-only {prior:P1}");
        foreach (var (family, accuracy) in result.FamilyAccuracy)
            Assert.IsGreaterThanOrEqualTo(MinimumFor(family), accuracy, $"{family}: {detail}");
    }

    // Spatial relations are not learned yet by the shipped checkpoint (≈50 %, chance): the open gap of the
    // foundation issue, recorded in bench/RESULTS.md. Every other family is above 99 % on the test split.
    private static double MinimumFor(QuestionFamily family) => family == QuestionFamily.Spatial ? 0.0 : 0.95;
}
