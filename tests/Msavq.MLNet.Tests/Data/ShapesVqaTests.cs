using System.Security.Cryptography;
using Microsoft.ML;
using Microsoft.ML.Data;
using Msavq.MLNet.Data;

namespace Msavq.MLNet.Tests.Data;

[TestClass]
public sealed class ShapesVqaTests
{
    private static byte[] Digest(int seed, int count)
    {
        using var sha = IncrementalHash.CreateHash(HashAlgorithmName.SHA256);
        foreach (var e in new ShapesVqaGenerator(seed).Take(count))
        {
            sha.AppendData(e.Image);
            sha.AppendData(System.Text.Encoding.UTF8.GetBytes(e.Question + "|" + e.Answer + "|" + e.Family));
        }
        return sha.GetHashAndReset();
    }

    [TestMethod]
    public void Generator_SameSeed_SameBytes()
    {
        CollectionAssert.AreEqual(Digest(5, 300), Digest(5, 300));
        CollectionAssert.AreNotEqual(Digest(5, 300), Digest(6, 300));
    }

    [TestMethod]
    public void Generator_AnswersAreBalancedWithinEachFamily()
    {
        var examples = new ShapesVqaGenerator(11).Take(6 * 120).ToList();
        foreach (var family in Enum.GetValues<QuestionFamily>())
        {
            var answers = ShapesVqaGenerator.AnswersOf(family);
            var counts = answers.Select(a => examples.Count(e => e.Family == family && e.Answer == a)).ToList();
            Assert.AreEqual(120, counts.Sum(), family.ToString());
            Assert.IsLessThanOrEqualTo(1, counts.Max() - counts.Min(), $"{family}: {string.Join(",", counts)}");
        }
    }

    [TestMethod]
    public void Generator_RestrictedToOneFamily_StaysBalanced()
    {
        var examples = new ShapesVqaGenerator(12, families: new[] { QuestionFamily.Spatial }).Take(200).ToList();
        Assert.IsTrue(examples.All(e => e.Family == QuestionFamily.Spatial));
        Assert.AreEqual(100, examples.Count(e => e.Answer == "yes"));
    }

    [TestMethod]
    public void Generator_AnswerFollowsFromTheScene()
    {
        foreach (var e in new ShapesVqaGenerator(3).Take(1200))
            Assert.AreEqual(e.Answer, SceneOracle.Answer(e), $"{e.Question} ({e.Family})");
    }

    [TestMethod]
    public void Generator_ObjectsOccupyDistinctCellsAndRespectTheLimit()
    {
        var gen = new ShapesVqaGenerator(4, maxObjects: 4);
        foreach (var e in gen.Take(600))
        {
            var objects = e.Scene.Objects;
            Assert.IsTrue(objects.Count is >= 1 and <= 4, $"{objects.Count} objects");
            Assert.AreEqual(objects.Count, objects.Select(o => (o.Row, o.Column)).Distinct().Count());
        }
    }

    [TestMethod]
    public void Render_DrawsEachObjectInsideItsCell()
    {
        foreach (var e in new ShapesVqaGenerator(8).Take(60))
        {
            var (shape, _) = e.Scene.CellLabels();
            for (int cell = 0; cell < shape.Length; cell++)
            {
                int r0 = cell / ShapesWorld.GridSize * ShapesWorld.CellSize, c0 = cell % ShapesWorld.GridSize * ShapesWorld.CellSize;
                int lit = 0;
                for (int y = r0; y < r0 + ShapesWorld.CellSize; y++)
                    for (int x = c0; x < c0 + ShapesWorld.CellSize; x++)
                    {
                        int p = (y * ShapesWorld.ImageSize + x) * 3;
                        if (e.Image[p] + e.Image[p + 1] + e.Image[p + 2] > 60) lit++;
                    }
                if (shape[cell] == 0) Assert.AreEqual(0, lit, $"empty cell {cell} has pixels");
                else Assert.IsGreaterThanOrEqualTo(6, lit, $"object in cell {cell} is not drawn");
            }
        }
    }

    [TestMethod]
    public void Generate_ExposesTheFourColumns()
    {
        var ml = new MLContext(seed: 0);
        var data = ShapesVqa.Generate(ml, count: 12, seed: 1);
        var schema = data.Schema;
        Assert.AreEqual(ShapesWorld.ImageBytes, ((VectorDataViewType)schema["Image"].Type).Size);
        Assert.AreEqual(NumberDataViewType.Byte, ((VectorDataViewType)schema["Image"].Type).ItemType);
        foreach (var name in new[] { "Question", "Answer", "Family" })
            Assert.AreEqual(TextDataViewType.Instance, schema[name].Type, name);
        var rows = ml.Data.CreateEnumerable<ShapesVqaRow>(data, reuseRowObject: false).ToList();
        Assert.HasCount(12, rows);
        Assert.AreEqual("color_of_shape", rows[0].Family);
    }

    [TestMethod]
    public void Splits_AreDisjointStreams()
    {
        var seeds = Enum.GetValues<ShapesVqaSplit>().Select(ShapesVqa.SeedOf).ToList();
        Assert.AreEqual(seeds.Count, seeds.Distinct().Count());
        var train = new ShapesVqaGenerator(ShapesVqa.SeedOf(ShapesVqaSplit.Train)).Take(2000)
            .Select(e => Convert.ToBase64String(e.Image)).ToHashSet();
        int shared = new ShapesVqaGenerator(ShapesVqa.SeedOf(ShapesVqaSplit.Test)).Take(500)
            .Count(e => train.Contains(Convert.ToBase64String(e.Image)));
        Assert.AreEqual(0, shared);
    }

    [TestMethod]
    public void QuestionOnlyBaseline_IsNearChance()
    {
        var baseline = new QuestionOnlyBaseline(new ShapesVqaGenerator(ShapesVqa.SeedOf(ShapesVqaSplit.Train)).Take(12000));
        var test = new ShapesVqaGenerator(ShapesVqa.SeedOf(ShapesVqaSplit.Test)).Take(2400).ToList();
        double accuracy = test.Average(e => baseline.Predict(e.Question, e.Family) == e.Answer ? 1.0 : 0.0);
        // Chance is the mean of 1/|answers| over families: (1/6 + 1/3 + 1/4 + 1/2 + 1/2 + 1/4) / 6 ≈ 0.333.
        Assert.IsLessThan(0.40, accuracy, $"question-only accuracy {accuracy:P1}");
    }
}
