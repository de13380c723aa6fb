using Msavq.MLNet.Models;
using TorchSharp;
using static TorchSharp.torch;
using F = TorchSharp.torch.nn.functional;

namespace Msavq.MLNet.Calibration;

/// <summary>
/// One forward and one backward pass per calibration batch with forward hooks on the listed layers (algorithm.md
/// §8.2): inputs x and output gradients δ = ∂L/∂y of the summed answer-token loss, split into image and text tokens.
/// </summary>
/// <remarks>
/// The model is left as it was found: the gradients are taken with <c>autograd.grad</c> at the hooked outputs only,
/// so no parameter's <c>.grad</c> is touched, the parameters' <c>requires_grad</c> flags are never changed, and the
/// hooks are removed before returning (also on failure).
/// </remarks>
internal static class StatisticsCollector
{
    public static Dictionary<string, ModalityStatistics> Collect(IQuantizableModel model, IReadOnlyList<ModelRow> rows,
        IReadOnlyList<QuantizableLayer> layers, int batchSize, IProgress<QuantizationProgress>? progress, string stage)
    {
        if (batchSize < 1) throw new ArgumentOutOfRangeException(nameof(batchSize), "Batch size must be >= 1.");
        var stats = layers.ToDictionary(l => l.Name,
            l => new ModalityStatistics(l.Name, l.Module.in_features, l.Module.out_features, model.Device));
        var captured = new List<(string Layer, Tensor X, Tensor Y)>();
        var hooks = layers.Select(l => l.Module.register_forward_hook((_, x, y) =>
        {
            // A model whose parameters are all frozen makes its first hooked output a graph leaf without gradient:
            // it is made differentiable here (an activation of this pass, not a parameter), so δ exists regardless.
            if (!y.requires_grad) y.requires_grad_(true);
            // Models may open their own dispose scopes; our handles leave them and are disposed after the batch.
            captured.Add((l.Name, x.detach().DetachFromDisposeScope(), y.alias().DetachFromDisposeScope()));
            return y;
        })).ToList();
        try
        {
            using var grad = enable_grad();
            using var sampler = new Generator(seed: SamplerSeed, device: model.Device);
            using var ignored = (-100).ToScalar();   // explicit Scalars (WeightedKMeans says why)
            int batches = (rows.Count + batchSize - 1) / batchSize;
            for (int bi = 0; bi < batches; bi++)
            {
                using var scope = NewDisposeScope();   // one scope per batch (architecture.md §6)
                captured.Clear();
                var slice = rows.Skip(bi * batchSize).Take(batchSize).ToList();
                using var batch = model.Encode(slice);
                var logits = model.Logits(batch);
                var flat = logits.reshape(-1, logits.shape[^1]);
                var labels = batch.Labels.reshape(-1);
                var answer = labels.ne(ignored);
                if (!answer.any().item<bool>()) throw new ArgumentException("A calibration batch has no answer tokens to compute the loss on.");
                // Summed (not averaged) answer-token losses: per-token gradients at their own scale (§8.2).
                var loss = F.cross_entropy(flat, labels, ignore_index: -100, reduction: nn.Reduction.Sum);
                if (!loss.isfinite().item<bool>()) throw new ArgumentException("The calibration loss is not finite (non-finite weights?).");
                // Labels drawn from the model's own prediction: their gradients estimate the curvature (true Fisher).
                var drawn = multinomial(F.softmax(flat.detach().to_type(ScalarType.Float32), -1), 1, generator: sampler).squeeze(1);
                var sampledLoss = F.cross_entropy(flat, where(answer, drawn, labels), ignore_index: -100, reduction: nn.Reduction.Sum);
                // δ at the hooked outputs only: nothing accumulates into the parameters' .grad (the caller's model).
                var trueGrads = OutputGradients(loss, captured, retainGraph: true);
                var sampledGrads = OutputGradients(sampledLoss, captured, retainGraph: false);
                for (int i = 0; i < captured.Count; i++)
                {
                    var (name, x, _) = captured[i];
                    Accumulate(stats[name], batch, x, trueGrads[i], sampledGrads[i]);
                }
                Release(captured);
                progress?.Report(new QuantizationProgress(stage, null, bi + 1, batches));
            }
        }
        finally
        {
            foreach (var h in hooks) h.remove();
            Release(captured);
        }
        var silent = layers.Where(l => stats[l.Name].ImageTokens + stats[l.Name].TextTokens == 0).Select(l => l.Name).ToList();
        if (silent.Count > 0)
            throw new InvalidOperationException(
                $"Layer(s) never fired during calibration: {string.Join(", ", silent)}. The model must invoke them through module.call().");
        return stats;
    }

    /// <summary>
    /// ∂<paramref name="loss"/>/∂y at every captured output (zeros where y does not reach the loss). libtorch's
    /// <c>grad</c> is not exception-safe through TorchSharp (a C++ error would end the process), so the cases it
    /// rejects — no inputs, a loss without gradient — are answered here without calling it.
    /// </summary>
    private static List<Tensor> OutputGradients(Tensor loss, List<(string Layer, Tensor X, Tensor Y)> captured, bool retainGraph)
    {
        if (captured.Count == 0) return new List<Tensor>();
        if (!loss.requires_grad) return captured.Select(c => zeros_like(c.Y)).ToList();
        var grads = autograd.grad(new[] { loss }, captured.Select(c => c.Y).ToList(), retain_graph: retainGraph, allow_unused: true);
        return captured.Select((c, i) => grads[i].IsInvalid ? zeros_like(c.Y) : grads[i]).ToList();
    }

    private static void Release(List<(string Layer, Tensor X, Tensor Y)> captured)
    {
        foreach (var (_, x, y) in captured) { x.Dispose(); y.Dispose(); }
        captured.Clear();
    }

    /// <summary>Seed of the label sampler: collection is deterministic.</summary>
    private const ulong SamplerSeed = 0x5eed;

    private static void Accumulate(ModalityStatistics s, ModelBatch batch, Tensor x, Tensor delta, Tensor sampled)
    {
        long n = x.shape[^1], m = delta.shape[^1];
        long seq = batch.Modality.shape[1];
        using var zero = 0.ToScalar();
        using var image = ((long)TokenModality.Image).ToScalar();
        var x2 = x.reshape(-1, n);
        var d2 = delta.reshape(-1, m);
        var s2 = sampled.reshape(-1, m);
        if (x.dim() == 3 && x.shape[1] == seq)
        {
            // Language-model positions: the batch says which are image tokens; padding is left out.
            var modality = batch.Modality.reshape(-1);
            var valid = batch.Valid.reshape(-1).gt(zero);
            var img = (modality.eq(image) & valid).nonzero().squeeze(1);
            var txt = (modality.ne(image) & valid).nonzero().squeeze(1);
            s.Add(true, x2.index_select(0, img), d2.index_select(0, img), s2.index_select(0, img));
            s.Add(false, x2.index_select(0, txt), d2.index_select(0, txt), s2.index_select(0, txt));
        }
        else
        {
            // Vision tower and projector see only image patches.
            s.Add(true, x2, d2, s2);
        }
    }
}
