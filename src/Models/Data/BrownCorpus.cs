using Microsoft.ML;

namespace Msavq.MLNet.Data;

/// <summary>A calibration row for a sentence encoder: a sentence and the one after it in the same document.</summary>
public sealed class SentencePairRow
{
    public string Text { get; set; } = "";
    public string Next { get; set; } = "";
}

/// <summary>
/// The committed Brown corpus subset (Data/Brown/README.md): 1,200 calibration sentences in adjacent pairs and 1,000
/// evaluation sentences from other documents. Embedded in this assembly; nothing is read from the network.
/// </summary>
public static class BrownCorpus
{
    public const string TextColumn = nameof(SentencePairRow.Text);
    public const string NextColumn = nameof(SentencePairRow.Next);

    private static readonly Lazy<string[]> CalibrationLines = new(() => Read("calibration.txt"));
    private static readonly Lazy<string[]> EvaluationLines = new(() => Read("evaluation.txt"));

    /// <summary>Calibration sentences; lines 2k and 2k+1 are adjacent in one document.</summary>
    public static IReadOnlyList<string> Calibration => CalibrationLines.Value;

    /// <summary>Evaluation sentences (documents disjoint from <see cref="Calibration"/>'s).</summary>
    public static IReadOnlyList<string> Evaluation => EvaluationLines.Value;

    /// <summary>
    /// <paramref name="sentences"/> calibration sentences as pairs (columns Text, Next): the first ones for draw 0, a
    /// seeded choice of pairs for draw <paramref name="draw"/> &gt; 0 (another calibration sample of the same corpus).
    /// </summary>
    public static IDataView CalibrationPairs(MLContext ml, int sentences, int draw = 0)
    {
        if (sentences < 2 || sentences > Calibration.Count)
            throw new ArgumentOutOfRangeException(nameof(sentences), $"Between 2 and {Calibration.Count} calibration sentences, got {sentences}.");
        var pairs = Enumerable.Range(0, Calibration.Count / 2).ToArray();
        if (draw != 0) new Random(draw).Shuffle(pairs);
        var rows = pairs.Take(sentences / 2)
            .Select(k => new SentencePairRow { Text = Calibration[2 * k], Next = Calibration[2 * k + 1] }).ToList();
        return ml.Data.LoadFromEnumerable(rows);
    }

    private static string[] Read(string file)
    {
        string name = $"Msavq.MLNet.Data.Brown.{file}";
        using var stream = typeof(BrownCorpus).Assembly.GetManifestResourceStream(name)
            ?? throw new FileNotFoundException($"Resource '{name}' is not embedded in {typeof(BrownCorpus).Assembly.GetName().Name}.");
        using var reader = new StreamReader(stream);
        return reader.ReadToEnd().Split('\n', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries);
    }
}
