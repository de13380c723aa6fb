using TorchSharp;
using static TorchSharp.torch;

namespace Msavq.MLNet.Models;

public sealed partial class ShapesVlm
{
    public VlmBatch Encode(IReadOnlyList<ModelRow> rows)
    {
        if (rows.Count == 0) throw new ArgumentException("Cannot encode an empty batch.", nameof(rows));
        int b = rows.Count, p = Config.ImageTokens, side = Config.ImageSize;
        int bytes = side * side * 3;
        var pixelBytes = new byte[b * bytes];
        var ids = new List<int>[b];
        var answerStart = new int[b];
        for (int i = 0; i < b; i++)
        {
            var row = rows[i];
            if (row.Image is null || row.Image.Length != bytes)
                throw new ArgumentException($"Row {i}: image has {row.Image?.Length ?? 0} bytes, expected {bytes} ({side}×{side}×3).");
            Buffer.BlockCopy(row.Image, 0, pixelBytes, i * bytes, bytes);
            var t = new List<int> { Tokenizer.BosId };
            t.AddRange(Tokenizer.Encode(row.Text ?? ""));
            answerStart[i] = t.Count;
            if (row.Target != null) t.AddRange(Tokenizer.Encode(row.Target));
            if (t.Count > Config.MaxTextTokens)
                throw new ArgumentException($"Row {i}: {t.Count} text tokens exceed the model's {Config.MaxTextTokens}.");
            ids[i] = t;
        }
        int tMax = ids.Max(t => t.Count), l = tMax + p;
        var tokens = new long[b * tMax];
        var labels = Enumerable.Repeat(-100L, b * l).ToArray();
        var modality = new byte[b * l];
        var valid = new float[b * l];
        var answerPos = new long[b];
        for (int i = 0; i < b; i++)
        {
            var t = ids[i];
            for (int j = 0; j < t.Count; j++)
            {
                tokens[i * tMax + j] = t[j];
                int pos = j == 0 ? 0 : j + p; // full-sequence position of text index j
                valid[i * l + pos] = 1;
                if (j >= answerStart[i])
                {
                    modality[i * l + pos] = (byte)TokenModality.Answer;
                    labels[i * l + pos - 1] = t[j]; // the previous position predicts this answer token
                }
            }
            for (int k = 1; k <= p; k++) { modality[i * l + k] = (byte)TokenModality.Image; valid[i * l + k] = 1; }
            answerPos[i] = answerStart[i] - 1 + p;
        }
        var dev = Device;
        using var scope = NewDisposeScope();
        using var half = 127.5.ToScalar();   // explicit Scalars, as in RmsNorm
        using var one = 1.0.ToScalar();
        var pix = tensor(pixelBytes, new long[] { b, side, side, 3 }).to(dev)
            .permute(0, 3, 1, 2).to_type(ScalarType.Float32).div_(half).sub_(one);
        return new VlmBatch
        {
            Pixels = pix.contiguous().MoveToOuterDisposeScope(),
            Tokens = tensor(tokens, new long[] { b, tMax }).to(dev).MoveToOuterDisposeScope(),
            Labels = tensor(labels, new long[] { b, l }).to(dev).MoveToOuterDisposeScope(),
            Modality = tensor(modality, new long[] { b, l }).to(dev).MoveToOuterDisposeScope(),
            Valid = tensor(valid, new long[] { b, l }).to(dev).MoveToOuterDisposeScope(),
            AnswerPositions = answerPos,
        };
    }

    ModelBatch IQuantizableModel.Encode(IReadOnlyList<ModelRow> rows) => Encode(rows);

    /// <summary>
    /// A calibration row must have an image of this model's size, and an answer made of vocabulary words only: an
    /// unknown word becomes [UNK], and the loss would train the statistics toward predicting it.
    /// </summary>
    string? IQuantizableModel.RowProblem(ModelRow row)
    {
        int bytes = Config.ImageSize * Config.ImageSize * 3;
        if (row.Image is null || row.Image.Length != bytes) return $"its image has {row.Image?.Length ?? 0} bytes, {bytes} expected";
        if (row.Target is { } answer)
        {
            var ids = Tokenizer.Encode(answer);
            if (ids.Count == 0) return $"its answer '{answer}' has no words";
            if (ids.Contains(Tokenizer.UnknownId))
            {
                var unknown = answer.Split(' ', StringSplitOptions.RemoveEmptyEntries).Where(w => Tokenizer.Encode(w).Contains(Tokenizer.UnknownId));
                return $"its answer '{answer}' has words outside the model's vocabulary ({string.Join(", ", unknown.Select(w => $"'{w}'"))})";
            }
            int length = 1 + Tokenizer.Encode(row.Text ?? "").Count + ids.Count;
            if (length > Config.MaxTextTokens) return $"its question and answer take {length} tokens, the model reads {Config.MaxTextTokens}";
        }
        return null;
    }
}
