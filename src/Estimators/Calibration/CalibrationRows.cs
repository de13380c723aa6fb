using Microsoft.ML;
using Microsoft.ML.Data;
using Msavq.MLNet.Models;
using Msavq.MLNet.Scoring;

namespace Msavq.MLNet.Calibration;

/// <summary>Reads calibration rows (image bytes, question, answer) out of an <see cref="IDataView"/>, checking the schema.</summary>
internal static class CalibrationRows
{
    public static void ValidateSchema(DataViewSchema schema, string? image, string? text, string? answer)
    {
        if (image is not null) ScoringSchema.CheckImage(schema.GetColumnOrNull(image)?.Type, image);
        if (text is not null) ScoringSchema.CheckText(schema.GetColumnOrNull(text)?.Type, text);
        if (answer is not null) ScoringSchema.CheckText(schema.GetColumnOrNull(answer)?.Type, answer);
    }

    /// <summary>
    /// The rows; with no <paramref name="image"/> column (a text-only model) each row's image is empty, with no
    /// <paramref name="text"/> column (an image-only model) its text, with no <paramref name="answer"/> column its target null.
    /// </summary>
    public static List<ModelRow> Read(IDataView data, string? image, string? text, string? answer)
    {
        ValidateSchema(data.Schema, image, text, answer);
        var cols = new[] { text, answer, image }.OfType<string>().Select(c => data.Schema[c]).ToArray();
        var rows = new List<ModelRow>();
        using var cursor = data.GetRowCursor(cols);
        var textGetter = text is null ? null : cursor.GetGetter<ReadOnlyMemory<char>>(data.Schema[text]);
        var answerGetter = answer is null ? null : cursor.GetGetter<ReadOnlyMemory<char>>(data.Schema[answer]);
        var imageGetter = image is null ? null : cursor.GetGetter<VBuffer<byte>>(data.Schema[image]);
        VBuffer<byte> img = default;
        ReadOnlyMemory<char> q = default, a = default;
        while (cursor.MoveNext())
        {
            imageGetter?.Invoke(ref img);
            textGetter?.Invoke(ref q);
            answerGetter?.Invoke(ref a);
            // Null text reaches us as empty; a question of white space is as empty to the model.
            if (textGetter != null && q.Span.IsWhiteSpace())
                throw new ArgumentException($"Calibration row {rows.Count} has an empty '{text}': the model needs a text to calibrate on.");
            if (answerGetter != null && a.Span.IsWhiteSpace())
                throw new ArgumentException($"Calibration row {rows.Count} has an empty '{answer}': the answer-token loss needs answers.");
            if (imageGetter != null && textGetter == null && img.Length == 0)
                throw new ArgumentException($"Calibration row {rows.Count} has an empty '{image}': the model needs an image to calibrate on.");
            rows.Add(new ModelRow(imageGetter is null ? [] : img.DenseValues().ToArray(), textGetter is null ? "" : q.ToString(),
                                  answerGetter is null ? null : a.ToString()));
        }
        if (rows.Count == 0) throw new ArgumentException("The calibration data is empty: at least one row is needed.", nameof(data));
        return rows;
    }
}
