using Microsoft.ML;
using Msavq.MLNet;
using Msavq.MLNet.Calibration;
using Msavq.MLNet.Data;
using Msavq.MLNet.Models;
using Msavq.MLNet.Models.MiniLm;
using static TorchSharp.torch;

namespace Msavq.Bench.Curves;

/// <summary>One metric: its name, which direction is better, and how it is printed.</summary>
public sealed record CurveMetric(string Name, bool LowerIsBetter, string Format);

/// <summary>
/// A model the curves are drawn for: its calibration draws (one per seed), its evaluation items, and the per-item
/// metrics of a quantized copy against the full-precision model on those items.
/// </summary>
public interface ICurveModel : IDisposable
{
    string Key { get; }
    string Title { get; }
    IQuantizableModel Model { get; }
    /// <summary>The metric tuning and the headline comparisons use.</summary>
    CurveMetric Primary { get; }
    IReadOnlyList<CurveMetric> Metrics { get; }
    /// <summary>Calibration rows of draw <paramref name="seed"/> (seed 0 is the standard draw).</summary>
    CalibrationCollector Collector(MLContext ml, out IDataView rows, int seed);
    /// <summary>Per metric, one value per evaluation item (NaN where an item does not count, e.g. another family).</summary>
    Dictionary<string, double[]> Evaluate(IQuantizableModel quantized);
    bool ScoreRows { get; }
    /// <summary>What the full-precision model scores where that is not trivially perfect (printed with the curves), or null.</summary>
    string? FullPrecision => null;
}

/// <summary>ShapesVlm on Shapes-VQA: KL(FP ‖ Q), answer NLL, agreement with FP, accuracy (overall and per family).</summary>
public sealed class ShapesCurveModel : ICurveModel
{
    private readonly ShapesVlm _model = ShapesVlm.LoadPretrained();
    private readonly List<VqaExample> _items;
    private readonly List<(Tensor LogProbs, Tensor Valid, Tensor Answer, long[] Predicted)> _fp;
    private readonly int _calibrationRows;
    private const int Batch = 250;

    public ShapesCurveModel(ShapesVqaSplit split, int questions, int calibrationRows)
    {
        if (split == ShapesVqaSplit.Train) throw new ArgumentException("Evaluating on the train split would reuse calibration rows.");
        _calibrationRows = calibrationRows;
        _items = new ShapesVqaGenerator(ShapesVqa.SeedOf(split)).Take(questions).ToList();
        _fp = Enumerable.Range(0, (_items.Count + Batch - 1) / Batch).Select(b => Forward(_model, b)).ToList();
        var families = _items.Select(e => ShapesVqaGenerator.NameOf(e.Family)).Distinct().OrderBy(f => f, StringComparer.Ordinal);
        Metrics = new[]
        {
            new CurveMetric("kl", true, "0.00E+0"), new CurveMetric("nll", true, "F4"), new CurveMetric("agreement", false, "P1"),
            new CurveMetric("accuracy", false, "P1"), new CurveMetric("sequence-kl", true, "0.00E+0"),
        }.Concat(families.Select(f => new CurveMetric($"accuracy[{f}]", false, "P1"))).ToList();
    }

    public string Key => "shapes-vlm";
    public string Title => "ShapesVlm (Shapes-VQA)";
    public IQuantizableModel Model => _model;
    public CurveMetric Primary => Metrics[0];
    public IReadOnlyList<CurveMetric> Metrics { get; }
    public bool ScoreRows => true;

    /// <summary>Draw s: the first rows of the train stream seeded 1 + 7919·s (s = 0 is the train split itself).</summary>
    public CalibrationCollector Collector(MLContext ml, out IDataView rows, int seed)
    {
        rows = ShapesVqa.Generate(ml, _calibrationRows, ShapesVqa.SeedOf(ShapesVqaSplit.Train) + 7919 * seed);
        return ml.Msavq().CollectCalibration(new CalibrationCollector.Options { Model = _model, Mode = CalibrationMode.OneShot });
    }

    /// <summary>
    /// One forward pass per batch gives every metric: at the first answer token, KL(FP ‖ Q), −log p(answer), the greedy
    /// answer (agreement with FP's, accuracy); over every real position of [bos; image; question; answer], the mean
    /// KL of the next-token distribution ("sequence-kl": the whole model's fidelity, where the answer-token KL is
    /// dominated by the few items the FP model is unsure of; reported beside the required metrics, not instead).
    /// </summary>
    public Dictionary<string, double[]> Evaluate(IQuantizableModel quantized)
    {
        var model = (ShapesVlm)quantized;
        var kl = new List<double>(); var nll = new List<double>(); var agree = new List<double>(); var correct = new List<double>();
        var seq = new List<double>();
        for (int b = 0; b < _fp.Count; b++)
        {
            using var scope = NewDisposeScope();
            var q = Forward(model, b);
            var p = _fp[b];
            var answer = (p.Answer.exp() * (p.Answer - q.Answer)).sum(-1);
            kl.AddRange(answer.to(ScalarType.Float64).cpu().data<double>().ToArray());
            var rows = _items.Skip(b * Batch).Take(Batch).ToList();
            var truth = tensor(rows.Select(e => (long)model.Tokenizer.Encode(e.Answer)[0]).ToArray(), device: q.Answer.device);
            nll.AddRange(q.Answer.gather(1, truth.unsqueeze(1)).squeeze(1).neg().to(ScalarType.Float64).cpu().data<double>().ToArray());
            for (int i = 0; i < rows.Count; i++)
            {
                agree.Add(q.Predicted[i] == p.Predicted[i] ? 1 : 0);
                correct.Add(model.AnswerText(q.Predicted[i]) == rows[i].Answer ? 1 : 0);
            }
            var positions = (p.LogProbs.exp() * (p.LogProbs - q.LogProbs)).sum(-1) * p.Valid;
            seq.AddRange((positions.sum(1) / p.Valid.sum(1)).to(ScalarType.Float64).cpu().data<double>().ToArray());
        }
        var result = new Dictionary<string, double[]>
        {
            ["kl"] = kl.ToArray(), ["nll"] = nll.ToArray(), ["agreement"] = agree.ToArray(), ["accuracy"] = correct.ToArray(),
            ["sequence-kl"] = seq.ToArray(),
        };
        foreach (var m in Metrics.Where(m => m.Name.StartsWith("accuracy[", StringComparison.Ordinal)))
        {
            string family = m.Name["accuracy[".Length..^1];
            result[m.Name] = _items.Select((e, i) => ShapesVqaGenerator.NameOf(e.Family) == family ? result["accuracy"][i] : double.NaN).ToArray();
        }
        return result;
    }

    /// <summary>Evaluation batch <paramref name="b"/> through <paramref name="model"/>: next-token log-probabilities, valid positions, the first answer token's log-probabilities and its greedy choice.</summary>
    private (Tensor LogProbs, Tensor Valid, Tensor Answer, long[] Predicted) Forward(ShapesVlm model, int b)
    {
        using var _ = no_grad();
        using var scope = NewDisposeScope();
        var rows = _items.Skip(b * Batch).Take(Batch).Select(e => new ModelRow(e.Image, e.Question, e.Answer)).ToList();
        using var batch = model.Encode(rows);
        var logp = TorchSharp.torch.nn.functional.log_softmax(model.Logits(batch), -1);
        var answer = ShapesVlm.GatherAnswerLogits(logp, batch);
        var predicted = answer.argmax(1).cpu().data<long>().ToArray();
        return (logp.MoveToOuterDisposeScope(), batch.Valid.to(ScalarType.Float32).MoveToOuterDisposeScope(), answer.MoveToOuterDisposeScope(), predicted);
    }

    public void Dispose()
    {
        foreach (var (logp, valid, answer, _) in _fp) { logp.Dispose(); valid.Dispose(); answer.Dispose(); }
        _model.Dispose();
    }
}

/// <summary>all-MiniLM-L6-v2 on Brown sentences: cosine of the quantized to the FP embedding, top-1 neighbour agreement.</summary>
public sealed class MiniLmCurveModel : ICurveModel
{
    private readonly MiniLmEncoder _model = MiniLmEncoder.LoadPretrained();
    private readonly List<string> _sentences;
    private readonly Tensor _reference, _neighbours;
    private readonly int _calibrationSentences;

    public MiniLmCurveModel(bool validation, int sentences, int calibrationSentences)
    {
        // The Brown evaluation set's first half is validation, its second half the test set.
        var all = BrownCorpus.Evaluation;
        int half = all.Count / 2;
        _sentences = (validation ? all.Take(half) : all.Skip(half)).Take(sentences).ToList();
        _calibrationSentences = calibrationSentences;
        _reference = MiniLmEmbeddings.Embed(_model, _sentences);
        _neighbours = MiniLmEmbeddings.Neighbours(_reference);
    }

    public string Key => "minilm";
    public string Title => "all-MiniLM-L6-v2 (Brown sentences)";
    public IQuantizableModel Model => _model;
    public CurveMetric Primary => Metrics[0];
    public IReadOnlyList<CurveMetric> Metrics { get; } = new[] { new CurveMetric("cosine", false, "F4"), new CurveMetric("top1", false, "P1") };
    public bool ScoreRows => false;

    /// <summary>Draw s: a seeded choice of adjacent-sentence pairs from the Brown calibration set (s = 0: the first ones).</summary>
    public CalibrationCollector Collector(MLContext ml, out IDataView rows, int seed)
    {
        rows = BrownCorpus.CalibrationPairs(ml, _calibrationSentences, seed);
        return ml.Msavq().CollectCalibration(new CalibrationCollector.Options
        {
            Model = _model, ImageColumnName = null, TextColumnName = BrownCorpus.TextColumn, AnswerColumnName = BrownCorpus.NextColumn,
            Mode = CalibrationMode.OneShot,
        });
    }

    public Dictionary<string, double[]> Evaluate(IQuantizableModel quantized)
    {
        using var scope = NewDisposeScope();
        var e = MiniLmEmbeddings.Embed((MiniLmEncoder)quantized, _sentences);
        return new Dictionary<string, double[]>
        {
            ["cosine"] = (_reference * e).sum(1).to(ScalarType.Float64).cpu().data<double>().ToArray(),
            ["top1"] = MiniLmEmbeddings.Neighbours(e).eq(_neighbours).to(ScalarType.Float64).cpu().data<double>().ToArray(),
        };
    }

    public void Dispose()
    {
        _reference.Dispose();
        _neighbours.Dispose();
        _model.Dispose();
    }
}
