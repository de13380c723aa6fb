using Msavq.Cli.Training;
using Msavq.MLNet.Data;
using Msavq.MLNet.Models;
using static TorchSharp.torch;

namespace Msavq.MLNet.Tests.Cli;

[TestClass]
public sealed class ShapesVlmTrainerTests
{
    [TestMethod]
    public void Train_WarmStartOnSpatialQuestions_RunsBothProbes_AndWritesResumableCheckpoints()
    {
        string dir = Path.Combine(Path.GetTempPath(), $"msavq-train-{Guid.NewGuid():N}");
        try
        {
            var options = new TrainingOptions
            {
                OutputDirectory = dir, Minutes = 0.02, BatchSize = 4, EvalQuestions = 12, EvalEveryMinutes = 10,
                InitFrom = "pretrained", Families = new[] { QuestionFamily.Spatial }, FocusFamily = null,
                CurriculumStartObjects = ShapesWorld.MaxObjects,
            };
            var points = new List<CurvePoint>();
            long steps = 0;
            new ShapesVlmTrainer(options).Train((_, step, _) => steps = step, points.Add, CancellationToken.None);

            Assert.IsGreaterThan(0L, steps);
            Assert.HasCount(1, points, "one evaluation, at the end of the budget");
            Assert.IsTrue(double.IsFinite(points[0].ReferentLoss) && double.IsFinite(points[0].RelationLoss),
                $"both probes ran on spatial questions: {points[0]}");
            Assert.HasCount(2, File.ReadAllLines(Path.Combine(dir, "curve.csv")), "header and one row");

            using var trained = ShapesVlmCheckpoint.Load(Path.Combine(dir, "last.ckpt"));
            using var pretrained = ShapesVlm.LoadPretrained();
            Assert.IsTrue(trained.Config.ImageGridPositions);
            // A warm start moves weights by a few steps of a small learning rate, it does not replace them.
            var before = pretrained.named_parameters().ToDictionary(p => p.name, p => p.parameter);
            foreach (var (name, p) in trained.named_parameters())
            {
                if (!before.TryGetValue(name, out var q)) continue;
                double drift = (p - q).abs().max().item<float>(), scale = q.abs().max().item<float>();
                Assert.IsLessThan(0.1 * scale + 1e-3, drift, $"{name} drifted {drift} (scale {scale})");
            }

            // Resuming continues the same run: the step count goes on from the saved one.
            var resumed = new List<CurvePoint>();
            new ShapesVlmTrainer(options with { Resume = true, InitFrom = null, Minutes = 0.04 })
                .Train((_, _, _) => { }, resumed.Add, CancellationToken.None);
            Assert.IsGreaterThan(points[0].Step, resumed.Last().Step);
        }
        finally
        {
            if (Directory.Exists(dir)) Directory.Delete(dir, recursive: true);
        }
    }
}
