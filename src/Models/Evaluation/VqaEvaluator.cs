using Msavq.MLNet.Data;
using static TorchSharp.torch;
using F = TorchSharp.torch.nn.functional;

namespace Msavq.MLNet.Models;

/// <summary>Exact-match accuracy per family and overall, plus answer NLL, of a model on VQA examples.</summary>
public sealed record VqaEvaluation(
    int Count, double Accuracy, double AnswerNll, IReadOnlyDictionary<QuestionFamily, double> FamilyAccuracy,
    string[] Predictions)
{
    public double MinFamilyAccuracy => FamilyAccuracy.Values.Min();

    /// <summary>Per example, log-probabilities of the first answer token over the vocabulary (for KL to another model).</summary>
    public float[][] AnswerLogProbs { get; init; } = Array.Empty<float[]>();

    /// <summary>Per example, −log p(answer) (the first answer token).</summary>
    public double[] AnswerNlls { get; init; } = Array.Empty<double>();

    /// <summary>Per example, whether the prediction is the answer.</summary>
    public bool[] Correct { get; init; } = Array.Empty<bool>();

    /// <summary>Mean KL(reference ‖ this) of the first-answer-token distributions, over the same examples.</summary>
    public double MeanKlFrom(VqaEvaluation reference) => KlFrom(reference).Average();

    /// <summary>Per example, KL(reference ‖ this) of the first-answer-token distributions.</summary>
    public double[] KlFrom(VqaEvaluation reference)
    {
        if (reference.AnswerLogProbs.Length != AnswerLogProbs.Length)
            throw new ArgumentException($"{reference.AnswerLogProbs.Length} reference rows but {AnswerLogProbs.Length} here.");
        var kl = new double[AnswerLogProbs.Length];
        for (int i = 0; i < AnswerLogProbs.Length; i++)
        {
            float[] p = reference.AnswerLogProbs[i], q = AnswerLogProbs[i];
            for (int k = 0; k < p.Length; k++)
                if (p[k] > -80) kl[i] += Math.Exp(p[k]) * (p[k] - (double)q[k]);
        }
        return kl;
    }

    /// <summary>Share of examples where this and <paramref name="reference"/> predict the same answer.</summary>
    public double AgreementWith(VqaEvaluation reference) =>
        Predictions.Zip(reference.Predictions).Average(t => t.First == t.Second ? 1.0 : 0.0);
}

public static class VqaEvaluator
{
    public static VqaEvaluation Evaluate(IVqaModel model, IReadOnlyList<VqaExample> examples, int batchSize = 256,
                                         IProgress<int>? progress = null)
    {
        if (examples.Count == 0) throw new ArgumentException("No examples to evaluate.", nameof(examples));
        var predictions = new string[examples.Count];
        var logProbs = new float[examples.Count][];
        var nlls = new double[examples.Count];
        using var _ = no_grad();
        for (int start = 0; start < examples.Count; start += batchSize)
        {
            using var scope = NewDisposeScope();
            var rows = examples.Skip(start).Take(batchSize).Select(e => new ModelRow(e.Image, e.Question, e.Answer)).ToList();
            using var batch = model.Encode(rows);
            var logits = model.AnswerLogits(batch);
            var logp = F.log_softmax(logits, -1);
            var target = batch.Labels.gather(1, tensor(batch.AnswerPositions, device: logits.device).unsqueeze(1)).squeeze(1);
            var itemNll = logp.gather(1, target.unsqueeze(1)).squeeze(1).neg().to_type(ScalarType.Float64).cpu().data<double>().ToArray();
            itemNll.CopyTo(nlls, start);
            var ids = logits.argmax(1).cpu().data<long>().ToArray();
            var lp = logp.to_type(ScalarType.Float32).cpu();
            long vocab = lp.shape[1];
            var flat = lp.data<float>().ToArray();
            for (int i = 0; i < ids.Length; i++) logProbs[start + i] = flat.AsSpan((int)(i * vocab), (int)vocab).ToArray();
            for (int i = 0; i < ids.Length; i++) predictions[start + i] = model.AnswerText(ids[i]);
            progress?.Report(Math.Min(start + batchSize, examples.Count));
        }
        var correct = examples.Select((e, i) => predictions[i] == e.Answer).ToArray();
        var perFamily = examples.Select((e, i) => (e.Family, Ok: correct[i])).GroupBy(t => t.Family)
            .OrderBy(g => g.Key).ToDictionary(g => g.Key, g => g.Average(t => t.Ok ? 1.0 : 0.0));
        return new VqaEvaluation(examples.Count, correct.Average(c => c ? 1.0 : 0.0), nlls.Average(), perFamily, predictions)
        {
            AnswerLogProbs = logProbs, AnswerNlls = nlls, Correct = correct,
        };
    }
}
