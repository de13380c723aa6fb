using Microsoft.ML;
using Microsoft.ML.Data;
using Msavq.MLNet.Models;
using Msavq.MLNet.Scoring;

namespace Msavq.MLNet.Calibration;

/// <summary>Reads calibration rows (image bytes, question, answer) out of an <see cref="IDataView"/>, checking the schema.</summary>
internal static class CalibrationRows
{
    public static void ValidateSchema(DataViewSchema schema, string? image, string text, string answer)
    {
        if (image is not null) ScoringSchema.CheckImage(schema.GetColumnOrNull(image)?.Type, image);
        ScoringSchema.CheckText(schema.GetColumnOrNull(text)?.Type, text);
        ScoringSchema.CheckText(schema.GetColumnOrNull(answer)?.Type, answer);
    }

    /// <summary>The rows; with no <paramref name="image"/> column (a text-only model) each row's image is empty.</summary>
    public static List<ModelRow> Read(IDataView data, string? image, string text, string answer)
    {
        ValidateSchema(data.Schema, image, text, answer);
        var cols = new[] { data.Schema[text], data.Schema[answer] }.Concat(image is null ? [] : [data.Schema[image]]).ToArray();
        var rows = new List<ModelRow>();
        using var cursor = data.GetRowCursor(cols);
        var textGetter = cursor.GetGetter<ReadOnlyMemory<char>>(cols[0]);
        var answerGetter = cursor.GetGetter<ReadOnlyMemory<char>>(cols[1]);
        var imageGetter = image is null ? null : cursor.GetGetter<VBuffer<byte>>(cols[2]);
        VBuffer<byte> img = default;
        ReadOnlyMemory<char> q = default, a = default;
        while (cursor.MoveNext())
        {
            imageGetter?.Invoke(ref img);
            textGetter(ref q);
            answerGetter(ref a);
            // Null text reaches us as empty; a question of white space is as empty to the model.
            if (q.Span.IsWhiteSpace())
                throw new ArgumentException($"Calibration row {rows.Count} has an empty '{text}': the model needs a text to calibrate on.");
            if (a.Span.IsWhiteSpace())
                throw new ArgumentException($"Calibration row {rows.Count} has an empty '{answer}': the answer-token loss needs answers.");
            rows.Add(new ModelRow(imageGetter is null ? [] : img.DenseValues().ToArray(), q.ToString(), a.ToString()));
        }
        if (rows.Count == 0) throw new ArgumentException("The calibration data is empty: at least one row is needed.", nameof(data));
        return rows;
    }
}
