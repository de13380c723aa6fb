using Microsoft.ML;
using Msavq.MLNet;
using Msavq.MLNet.Calibration;
using Msavq.MLNet.Data;
using Msavq.MLNet.Models.MiniLm;
using Msavq.MLNet.Quantization;
using static TorchSharp.torch;

namespace Msavq.Bench.Quality;

/// <summary>What one experiment measured on the evaluation sentences, against the fp32 embeddings.</summary>
public sealed record MiniLmResult(AccuracyExperiment Experiment, double BitsPerWeight, double MeanCosine, double MinCosine,
                                  double Top1Agreement, double Seconds, string? Error = null);

/// <summary>
/// Runs the MiniLM table: calibration once on Brown sentence pairs (the contrastive objective), each experiment through
/// the same chain as the accuracy table, then the quantized encoder's embeddings of the evaluation sentences against
/// the fp32 ones: cosine per sentence, and whether each sentence keeps its nearest neighbour among the others.
/// </summary>
public sealed class MiniLmRunner(MLContext ml, MiniLmEncoder model, int calibrationSentences, IReadOnlyList<string> evaluation,
                                 CalibrationMode mode, ChainSettings settings)
{
    private const int BatchSize = 64;

    public IEnumerable<MiniLmResult> Run(IReadOnlyList<AccuracyExperiment> experiments, Action<string>? status = null)
    {
        status?.Invoke($"embedding {evaluation.Count} sentences with the fp32 model");
        using var reference = Embed(model, evaluation);
        using var referenceNeighbours = Neighbours(reference);
        status?.Invoke($"calibrating on {calibrationSentences} sentences");
        var calibData = BrownCorpus.CalibrationPairs(ml, calibrationSentences);
        var collector = ml.Msavq().CollectCalibration(new CalibrationCollector.Options
        {
            Model = model, ImageColumnName = null, TextColumnName = BrownCorpus.TextColumn, AnswerColumnName = BrownCorpus.NextColumn,
            Mode = mode,
        }).Fit(calibData);
        foreach (var e in experiments.Where(x => x.PlainMinMaxGrid))
        {
            status?.Invoke($"{e.Name}");
            yield return PlainGrid(e, reference, referenceNeighbours);
        }
        var chain = new ExperimentChain(ml, collector.Transform(calibData), settings with { ScoreRows = false });
        foreach (var (e, q, error, seconds) in chain.FitAll(experiments.Where(x => !x.PlainMinMaxGrid).ToList(), status))
        {
            if (q is null)
            {
                yield return new MiniLmResult(e, double.NaN, double.NaN, double.NaN, double.NaN, seconds, error);
                continue;
            }
            using var quantized = (MiniLmEncoder)q.Model;
            yield return Score(e, quantized, q.BitsPerWeight, seconds, reference, referenceNeighbours);
        }
    }

    private MiniLmResult Score(AccuracyExperiment e, MiniLmEncoder quantized, double bitsPerWeight, double seconds,
                               Tensor reference, Tensor referenceNeighbours)
    {
        using var scope = NewDisposeScope();
        var embeddings = Embed(quantized, evaluation);
        var cosine = (reference * embeddings).sum(1).to(ScalarType.Float64);
        double agreement = Neighbours(embeddings).eq(referenceNeighbours).to(ScalarType.Float64).mean().item<double>();
        return new MiniLmResult(e, bitsPerWeight, cosine.mean().item<double>(), cosine.min().item<double>(), agreement, seconds);
    }

    /// <summary>The harness check: 2-bit RTN on the plain min–max grid, written straight into a copy's linears.</summary>
    private MiniLmResult PlainGrid(AccuracyExperiment e, Tensor reference, Tensor referenceNeighbours)
    {
        var clock = System.Diagnostics.Stopwatch.StartNew();
        using var copy = model.Clone();
        using (no_grad())
            foreach (var layer in copy.QuantizableLayers)
            {
                using var scope = NewDisposeScope();
                var w = layer.Module.weight!;
                w.copy_(RoundToNearest.DequantizePlainMinMax(w.detach(), 2, AccuracyExperiment.PlainGroupSize));
            }
        return Score(e, copy, AccuracyExperiment.PlainBitsPerWeight, clock.Elapsed.TotalSeconds, reference, referenceNeighbours);
    }

    /// <summary>Normalized sentence embeddings [N, H] in input order, one dispose scope per batch (architecture.md §6).</summary>
    public static Tensor Embed(MiniLmEncoder encoder, IReadOnlyList<string> sentences)
    {
        using var _ = no_grad();
        // Batches of similar length waste little on padding; the rows go back to input order at the end.
        var order = Enumerable.Range(0, sentences.Count).OrderBy(i => sentences[i].Length).ToArray();
        var parts = new List<Tensor>();
        for (int start = 0; start < order.Length; start += BatchSize)
        {
            using var scope = NewDisposeScope();
            parts.Add(encoder.Embed(order.Skip(start).Take(BatchSize).Select(i => sentences[i]).ToList()).MoveToOuterDisposeScope());
        }
        using var sorted = cat(parts, 0);
        foreach (var p in parts) p.Dispose();
        using var index = tensor(order.Select(i => (long)i).ToArray(), device: sorted.device);
        return zeros_like(sorted).index_copy_(0, index, sorted);
    }

    /// <summary>Each sentence's nearest other sentence by cosine (the embeddings are unit vectors).</summary>
    public static Tensor Neighbours(Tensor embeddings)
    {
        using var scope = NewDisposeScope();
        var self = eye(embeddings.shape[0], dtype: ScalarType.Bool, device: embeddings.device);
        return matmul(embeddings, embeddings.t()).masked_fill(self, float.NegativeInfinity).argmax(1).MoveToOuterDisposeScope();
    }
}
