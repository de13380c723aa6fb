using Msavq.MLNet.Data;
using Msavq.MLNet.Models;
using static TorchSharp.torch;

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

    [TestMethod]
    public void ImageTokens_CarryTheirPosition_AtTheScaleOfTheirContent()
    {
        using var model = ShapesVlm.LoadPretrained();
        Assert.IsTrue(model.Config.ImageGridPositions);
        var examples = new ShapesVqaGenerator(ShapesVqa.SeedOf(ShapesVqaSplit.Validation)).Take(32).ToList();
        using var scope = NewDisposeScope();
        using var _ = no_grad();
        using var batch = model.Encode(examples.Select(e => new ModelRow(e.Image, e.Question)).ToList());
        var projector = (TorchSharp.torch.nn.Module<Tensor, Tensor>)model.named_children().Single(c => c.name == "projector").module;
        double content = Rms(projector.call(model.EncodeImage(batch.Pixels)));
        var p = model.named_parameters().ToDictionary(x => x.name, x => x.parameter);
        int tokens = model.Config.ImageTokens, grid = (int)p["image_rows"].shape[0];
        var sequence = p["pos_embed"][0, 1..(tokens + 1)];                      // the rows the image tokens sit at
        var cells = (p["image_rows"].unsqueeze(1) + p["image_cols"].unsqueeze(0)).reshape(grid * grid, -1);
        // Only what differs between positions tells them apart: centre over the image tokens.
        double table = Rms(sequence - sequence.mean(new long[] { 0 }, true));
        double withGrid = Rms((sequence + cells) - (sequence + cells).mean(new long[] { 0 }, true));
        Console.WriteLine($"image token rms {content:F3}; position part: sequence table alone {table:F4} ({table / content:P1}), " +
                          $"with the grid embeddings {withGrid:F4} ({withGrid / content:P1})");
        Assert.IsGreaterThan(0.2 * content, withGrid, "position must be a sizeable part of an image token");
    }

    private static double Rms(Tensor t) => t.square().mean().sqrt().item<float>();
}
