using Microsoft.ML;
using Microsoft.ML.Data;

namespace Msavq.MLNet.Data;

/// <summary>Which split of Shapes-VQA; each has its own seed, so the splits are disjoint streams.</summary>
public enum ShapesVqaSplit { Train, Validation, Test }

/// <summary>A row of the Shapes-VQA <see cref="IDataView"/>.</summary>
public sealed class ShapesVqaRow
{
    /// <summary>RGB bytes, height × width × 3, row-major (<see cref="ShapesWorld.ImageSize"/>² pixels).</summary>
    [VectorType(ShapesWorld.ImageBytes)]
    public byte[] Image { get; set; } = Array.Empty<byte>();
    public string Question { get; set; } = "";
    public string Answer { get; set; } = "";
    public string Family { get; set; } = "";
}

/// <summary>Shapes-VQA as ML.NET data: columns Image (byte vector), Question, Answer, Family.</summary>
public static class ShapesVqa
{
    /// <summary>The seed of each split.</summary>
    public static int SeedOf(ShapesVqaSplit split) => split switch
    {
        ShapesVqaSplit.Train => 1,
        ShapesVqaSplit.Validation => 2_000_003,
        _ => 3_000_017,
    };

    /// <summary>Generates <paramref name="count"/> rows from <paramref name="seed"/>.</summary>
    public static IDataView Generate(MLContext ml, int count, int seed) =>
        ml.Data.LoadFromEnumerable(Rows(count, seed));

    /// <summary>Generates the first <paramref name="count"/> rows of a split.</summary>
    public static IDataView Generate(MLContext ml, ShapesVqaSplit split, int count) =>
        Generate(ml, count, SeedOf(split));

    /// <summary>The rows behind <see cref="Generate(MLContext,int,int)"/>.</summary>
    public static IEnumerable<ShapesVqaRow> Rows(int count, int seed)
    {
        if (count < 0) throw new ArgumentOutOfRangeException(nameof(count), "count must be >= 0.");
        var gen = new ShapesVqaGenerator(seed);
        return gen.Take(count).Select(ToRow).ToList();
    }

    public static ShapesVqaRow ToRow(VqaExample e) => new()
    {
        Image = e.Image, Question = e.Question, Answer = e.Answer, Family = ShapesVqaGenerator.NameOf(e.Family),
    };
}
