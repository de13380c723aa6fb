using Msavq.MLNet.Format;
using Msavq.MLNet.Models;
using TorchSharp;
using static TorchSharp.torch;
using F = TorchSharp.torch.nn.functional;

namespace Msavq.MLNet.FineTuning;

/// <summary>Options of <see cref="CodebookFineTuner"/>.</summary>
public sealed record CodebookFineTuneOptions
{
    /// <summary>Adam steps; 0 turns fine-tuning off.</summary>
    public int Steps { get; init; }
    public double LearningRate { get; init; } = 1e-3;
    /// <summary>Calibration rows per step.</summary>
    public int BatchSize { get; init; } = 16;
    public int Seed { get; init; }
}

/// <summary>
/// Codebook fine-tuning after quantization (beyond the paper, as AQLM and VPTQ do; GPTVQ §3.4 tunes codebooks on the
/// layer objective): the codes stay fixed, and every vector-quantized layer's codebooks and row scales are trained
/// with Adam on KL(FP ‖ quantized) of the model's calibration objective (<see cref="IQuantizableModel.Logits"/> at
/// the labelled positions) over the calibration rows. Trained in float32 and rounded to their stored precision at
/// the end; the result is kept only if it lowers that KL on the calibration rows, measured on the stored values.
/// </summary>
internal static class CodebookFineTuner
{
    public static IReadOnlyList<QuantizedLayer> Run(IQuantizableModel teacher, IQuantizableModel student, IReadOnlyList<QuantizedLayer> stored,
        IReadOnlyList<ModelRow> rows, CodebookFineTuneOptions o, IProgress<QuantizationProgress>? progress)
    {
        if (o.Steps <= 0 || rows.Count == 0) return stored;
        var byName = student.QuantizableLayers.ToDictionary(l => l.Name);
        var layers = stored.Where(l => l.Kind == QuantizedKind.Vector).Select(l => new TrainableLayer(l, byName[l.Name].Module)).ToList();
        if (layers.Count == 0) return stored;
        var parameters = student is nn.Module module ? module.parameters().ToList() : new List<TorchSharp.Modules.Parameter>();
        var wasTrainable = parameters.Select(p => p.requires_grad).ToList();
        try
        {
            foreach (var p in parameters) p.requires_grad = false;
            foreach (var l in layers) l.Module.weight!.requires_grad = true;
            var batches = Batches(rows, o);
            double before = Kl(teacher, student, batches, layers, rounded: true);
            using var optimizer = new Adam(layers.SelectMany(l => l.Parameters), o.LearningRate);
            for (int step = 0; step < o.Steps; step++)
            {
                using var scope = NewDisposeScope();
                optimizer.ZeroGrad();
                var weights = layers.Select(l => l.Weight()).ToList();
                using (no_grad())
                    for (int i = 0; i < layers.Count; i++) layers[i].Module.weight!.copy_(weights[i]);
                var loss = Loss(teacher, student, batches[step % batches.Count]);
                loss.backward();
                // Second stage: the weights' gradients flow on into the codebooks and scales they are made of.
                autograd.backward(weights, layers.Select(l => l.Module.weight!.grad!).ToList());
                foreach (var l in layers) l.Module.weight!.grad?.zero_();
                optimizer.Step();
                if (Environment.GetEnvironmentVariable("MSAVQ_DEBUG") is not null && step % 10 == 0) Console.Error.WriteLine($"step {step}: loss {loss.item<float>():G4} {DateTime.Now:HH:mm:ss.fff}");
                progress?.Report(new QuantizationProgress("fine-tune", null, step + 1, o.Steps));
            }
            double after = Kl(teacher, student, batches, layers, rounded: true);
            if (Environment.GetEnvironmentVariable("MSAVQ_DEBUG") is not null) Console.Error.WriteLine($"fine-tune: KL {before:G4} -> {after:G4}");
            var tuned = after < before ? layers.Select(l => l.Stored()).ToList() : null;
            var result = stored.Select(l => tuned?.FirstOrDefault(t => t.Name == l.Name) ?? l).ToList();
            StoredWeights.Write(student, new QuantizedModel("", new Dictionary<string, string>(), result), "fine-tuning");
            return result;
        }
        finally
        {
            for (int i = 0; i < parameters.Count; i++) parameters[i].requires_grad = wasTrainable[i];
            foreach (var l in layers) l.Dispose();
        }
    }

    /// <summary>The calibration rows in a fixed, seeded order, cut into batches (one pass per epoch, repeated).</summary>
    private static List<List<ModelRow>> Batches(IReadOnlyList<ModelRow> rows, CodebookFineTuneOptions o)
    {
        var order = Enumerable.Range(0, rows.Count).OrderBy(_ => 0).ToArray();
        new Random(o.Seed).Shuffle(order);
        int size = Math.Max(1, Math.Min(o.BatchSize, rows.Count));
        return order.Chunk(size).Select(c => c.Select(i => rows[i]).ToList()).ToList();
    }

    /// <summary>Mean KL(teacher ‖ student) of the objective's distributions at the labelled positions of one batch.</summary>
    private static Tensor Loss(IQuantizableModel teacher, IQuantizableModel student, List<ModelRow> rows)
    {
        Tensor target;
        using (var batch = teacher.Encode(rows))
        using (no_grad())
            target = Distribution(teacher.Logits(batch), batch).log_softmax(-1);
        using var studentBatch = student.Encode(rows);
        var logp = Distribution(student.Logits(studentBatch), studentBatch).log_softmax(-1);
        using var positions = logp.shape[1].ToScalar();   // explicit Scalars (WeightedKMeans says why)
        return F.kl_div(logp, target, reduction: nn.Reduction.Mean, log_target: true).mul(positions);
    }

    /// <summary>
    /// The distributions to match: at every real position when the logits cover the sequence (a language model's
    /// next-token distribution everywhere carries far more of the model than its few answer tokens, and 128 rows of
    /// answers alone overfit), else at the objective's labelled positions.
    /// </summary>
    private static Tensor Distribution(Tensor logits, ModelBatch batch)
    {
        using var zero = 0.ToScalar();
        using var ignored = (-100).ToScalar();
        var flat = logits.reshape(-1, logits.shape[^1]);
        var mask = logits.dim() == 3 && logits.shape[1] == batch.Valid.shape[1] && logits.shape[0] == batch.Valid.shape[0]
            ? batch.Valid.reshape(-1).gt(zero)
            : batch.Labels.reshape(-1).ne(ignored);
        return flat.index_select(0, mask.nonzero().squeeze(1)).to_type(ScalarType.Float32);
    }

    /// <summary>Mean KL over all calibration batches with the weights as they would be stored.</summary>
    private static double Kl(IQuantizableModel teacher, IQuantizableModel student, List<List<ModelRow>> batches, List<TrainableLayer> layers, bool rounded)
    {
        using var scope = NewDisposeScope();
        using var _ = no_grad();
        foreach (var l in layers) l.Module.weight!.copy_(rounded ? StoredWeights.Weight(l.Stored(), l.Module.weight.device) : l.Weight());
        return batches.Average(b => Loss(teacher, student, b).item<float>());
    }

    /// <summary>
    /// Adam as TorchSharp's <c>optim.Adam</c> computes it with its defaults (β = 0.9, 0.999; ε = 1e-8; no weight decay),
    /// the same operations in the same order, but with explicit Scalars: the library's step passes its coefficients as
    /// implicit ones, which the finalizer may free while libtorch reads them (WeightedKMeans says more).
    /// </summary>
    private sealed class Adam : IDisposable
    {
        private const double Beta1 = 0.9, Beta2 = 0.999, Epsilon = 1e-8;
        private readonly List<TorchSharp.Modules.Parameter> _parameters;
        private readonly Tensor[] _average, _averageSquare;
        private readonly double _learningRate;
        private long _step;

        public Adam(IEnumerable<TorchSharp.Modules.Parameter> parameters, double learningRate)
        {
            _parameters = parameters.ToList();
            _learningRate = learningRate;
            _average = _parameters.Select(p => zeros_like(p).DetachFromDisposeScope()).ToArray();
            _averageSquare = _parameters.Select(p => zeros_like(p).DetachFromDisposeScope()).ToArray();
        }

        public void ZeroGrad()
        {
            foreach (var p in _parameters)
            {
                using var grad = p.grad;
                grad?.zero_();
            }
        }

        public void Step()
        {
            using var _ = no_grad();
            using var scope = NewDisposeScope();
            _step++;
            double correction1 = 1 - Math.Pow(Beta1, _step), correction2 = 1 - Math.Pow(Beta2, _step);
            using var one = 1.ToScalar();
            using var beta1 = Beta1.ToScalar();
            using var rest1 = (1 - Beta1).ToScalar();
            using var beta2 = Beta2.ToScalar();
            using var rest2 = (1 - Beta2).ToScalar();
            using var epsilon = Epsilon.ToScalar();
            using var root = Math.Sqrt(correction2).ToScalar();
            using var stepSize = (-(_learningRate / correction1)).ToScalar();
            for (int i = 0; i < _parameters.Count; i++)
            {
                var grad = _parameters[i].grad;
                if (grad is null) continue;
                _average[i].mul_(beta1).add_(grad, rest1);
                _averageSquare[i].mul_(beta2).addcmul_(grad, grad.conj(), rest2);
                var denominator = _averageSquare[i].sqrt().div(root).add_(epsilon, one);
                _parameters[i].addcdiv_(_average[i], denominator, stepSize);
            }
        }

        public void Dispose()
        {
            foreach (var t in _average.Concat(_averageSquare)) t.Dispose();
        }
    }

    /// <summary>One vector-quantized layer as trainable tensors: all its codebooks in one vector, and its row scales.</summary>
    private sealed class TrainableLayer : IDisposable
    {
        private readonly QuantizedLayer _layer;
        private readonly Tensor _index;                      // [m·n] → entry of _books, in W's own column order
        private readonly TorchSharp.Modules.Parameter _books;        // [Σ K_t·d] float32
        private readonly TorchSharp.Modules.Parameter? _rowScales;   // [m] float32

        public TrainableLayer(QuantizedLayer layer, TorchSharp.Modules.Linear module)
        {
            _layer = layer;
            Module = module;
            var device = module.weight!.device;
            int m = layer.Rows, n = layer.Columns, d = layer.VectorDim, vecs = n / d, cg = layer.ColumnGroups;
            var offsets = new long[layer.CodebookSizes.Length];
            for (int t = 1; t < offsets.Length; t++) offsets[t] = offsets[t - 1] + (long)layer.CodebookSizes[t - 1] * d;
            var index = new long[(long)m * n];
            for (int i = 0; i < m; i++)
            {
                int rg = i / layer.RowsPerGroup;
                for (int v = 0; v < vecs; v++)
                {
                    int tile = rg * cg + v * d / layer.ColumnsPerGroup;
                    long code = layer.Codes[(long)i * vecs + v];
                    for (int k = 0; k < d; k++)
                    {
                        int column = layer.ColumnOrder?[v * d + k] ?? v * d + k;
                        index[(long)i * n + column] = offsets[tile] + code * d + k;
                    }
                }
            }
            _index = tensor(index, device: device);
            var books = Enumerable.Range(0, layer.CodebookSizes.Length).SelectMany(layer.Codebook).ToArray();
            _books = nn.Parameter(tensor(books, device: device));
            _rowScales = layer.RowScales is { } rs ? nn.Parameter(tensor(rs.Select(x => (float)x).ToArray(), device: device)) : null;
        }

        public TorchSharp.Modules.Linear Module { get; }

        public IEnumerable<TorchSharp.Modules.Parameter> Parameters => _rowScales is null ? new[] { _books } : new[] { _books, _rowScales };

        /// <summary>Ŵ [m, n] as a function of the codebooks and scales (autograd sees it).</summary>
        public Tensor Weight()
        {
            var w = _books.index_select(0, _index).reshape(_layer.Rows, _layer.Columns);
            return _rowScales is null ? w : w * _rowScales.unsqueeze(1);
        }

        /// <summary>The layer with its codebooks and scales rounded to what the file stores.</summary>
        public QuantizedLayer Stored()
        {
            using var _ = no_grad();
            var all = _books.detach().cpu().data<float>().ToArray();
            int d = _layer.VectorDim, tiles = _layer.CodebookSizes.Length;
            var values = new sbyte[_layer.Int8Codebooks ? tiles : 0][];
            var scales = new Half[_layer.Int8Codebooks ? tiles : 0];
            var halves = new Half[_layer.Int8Codebooks ? 0 : tiles][];
            int at = 0;
            for (int t = 0; t < tiles; t++)
            {
                var book = all.AsSpan(at, _layer.CodebookSizes[t] * d).ToArray();
                at += book.Length;
                if (!_layer.Int8Codebooks) { halves[t] = book.Select(x => (Half)x).ToArray(); continue; }
                float max = book.Max(Math.Abs);
                var s = (Half)(max > 0 ? max / 127.0 : 1.0);
                values[t] = book.Select(x => (sbyte)Math.Clamp(Math.Round(x / (float)s), -127, 127)).ToArray();
                scales[t] = s;
            }
            var rowScales = _rowScales?.detach().cpu().data<float>().Select(x => (Half)x).ToArray();
            return _layer.WithCodebooks(values, scales, halves, rowScales);
        }

        public void Dispose()
        {
            _index.Dispose();
            _books.Dispose();
            _rowScales?.Dispose();
        }
    }
}
