using Msavq.Cli.Training;
using Msavq.MLNet.Data;
using Msavq.MLNet.Models;
using static TorchSharp.torch;

namespace Msavq.MLNet.Tests.Cli;

/// <summary>
/// Every run here has a step budget: a wall-clock one lets a busy machine reach its end before the first evaluation
/// (issue 19.7), and tests must do the same however fast they run.
/// </summary>
[TestClass]
public sealed class ShapesVlmTrainerTests
{
    // The runs use one torch thread: on a busy machine two wait on each other, and a step of a 4-row batch took
    // seconds instead of a tenth. The trainer sets the count process-wide; each test gives back the one it found.
    private readonly int _threads = get_num_threads();

    [TestCleanup]
    public void RestoreThreads() => set_num_threads(_threads);

    private static string NewRunDirectory() => Path.Combine(Path.GetTempPath(), $"msavq-train-{Guid.NewGuid():N}");

    [TestMethod]
    public void Train_WarmStartOnSpatialQuestions_RunsBothProbes_AndWritesResumableCheckpoints()
    {
        string dir = NewRunDirectory();
        try
        {
            var options = new TrainingOptions
            {
                OutputDirectory = dir, Steps = 2, EvalEverySteps = 10, BatchSize = 4, EvalQuestions = 12, Threads = 1,
                InitFrom = "pretrained", Families = new[] { QuestionFamily.Spatial }, FocusFamily = null,
                CurriculumStartObjects = ShapesWorld.MaxObjects,
            };
            var points = new List<CurvePoint>();
            new ShapesVlmTrainer(options).Train((_, _, _) => { }, points.Add, CancellationToken.None);

            Assert.HasCount(1, points, "one evaluation, at the end of the budget");
            Assert.AreEqual(2L, points[0].Step);
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
            new ShapesVlmTrainer(options with { Resume = true, InitFrom = null, Steps = 3 })
                .Train((_, _, _) => { }, resumed.Add, CancellationToken.None);
            Assert.AreEqual(3L, resumed.Single().Step);
        }
        finally
        {
            if (Directory.Exists(dir)) Directory.Delete(dir, recursive: true);
        }
    }

    /// <summary>
    /// A step budget runs exactly that many steps, evaluates every N steps and at the last one, starts the focus at
    /// its step, and a resumed run goes on to the new total with the same cadence.
    /// </summary>
    [TestMethod]
    public void Train_StepBudget_RunsExactlyThoseSteps_EvaluatesAtTheEnd_AndResumesToTheTotal()
    {
        string dir = NewRunDirectory();
        try
        {
            // Spatial questions only come from the focus stream, so the referent probe's loss shows when the focus started.
            var options = new TrainingOptions
            {
                OutputDirectory = dir, Steps = 3, EvalEverySteps = 2, BatchSize = 4, EvalQuestions = 12, Threads = 1,
                Families = new[] { QuestionFamily.ColorOfShape }, FocusFamily = QuestionFamily.Spatial, FocusShare = 0.5,
                FocusAfterSteps = 2,
            };
            var steps = new List<(double Fraction, long Step)>();
            var points = new List<CurvePoint>();
            new ShapesVlmTrainer(options).Train((frac, step, _) => steps.Add((frac, step)), points.Add, CancellationToken.None);

            CollectionAssert.AreEqual(new[] { 1L, 2L, 3L }, steps.Select(s => s.Step).ToArray());
            Assert.AreEqual(1.0, steps[^1].Fraction);
            CollectionAssert.AreEqual(new[] { 2L, 3L }, points.Select(p => p.Step).ToArray(), "every 2 steps and at the last");
            Assert.IsTrue(double.IsNaN(points[0].ReferentLoss), "no spatial question in the first 2 steps");
            Assert.IsTrue(double.IsFinite(points[1].ReferentLoss), "the focus started after 2 steps");

            var resumed = new List<CurvePoint>();
            new ShapesVlmTrainer(options with { Resume = true, Steps = 5 }).Train((_, _, _) => { }, resumed.Add, CancellationToken.None);
            CollectionAssert.AreEqual(new[] { 4L, 5L }, resumed.Select(p => p.Step).ToArray());
            Assert.HasCount(1 + 4, File.ReadAllLines(Path.Combine(dir, "curve.csv")), "header and the rows of both runs");
        }
        finally
        {
            if (Directory.Exists(dir)) Directory.Delete(dir, recursive: true);
        }
    }
}
