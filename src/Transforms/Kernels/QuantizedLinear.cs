using Msavq.MLNet.Format;
using TorchSharp;
using static TorchSharp.torch;

namespace Msavq.MLNet.Kernels;

/// <summary>
/// A Linear layer that runs on its vector-quantized weight (inference only). Up to
/// <see cref="SmallBatchRows"/> activation rows on the CPU (decoding) go through <see cref="LutKernel"/> on the
/// packed codes; larger batches decode the weight a slab of rows at a time and multiply with TorchSharp's matmul
/// on the module's device, so the fp32 matrix never exists whole.
/// </summary>
public sealed class QuantizedLinear : nn.Module<Tensor, Tensor>
{
    /// <summary>Rows per decoded slab on the large-batch path (bounds its temporary memory).</summary>
    public const int SlabRows = 512;
    /// <summary>Weights per look-up thread; smaller layers use fewer threads than <see cref="LutKernelOptions.Threads"/>.</summary>
    public const long WeightsPerThread = 1 << 19;

    private readonly Tensor? _bias;

    /// <param name="layer">The stored layer (vector-quantized, K ≤ 256 per tile; see <see cref="PackedVqWeight.Supports"/>).</param>
    /// <param name="bias">The original Linear's bias (copied), or null.</param>
    /// <param name="kernel">Look-up kernel options (int8 or exact tables, threads).</param>
    /// <param name="smallBatchRows">Most rows that take the look-up kernel (default 8).</param>
    public QuantizedLinear(QuantizedLayer layer, Tensor? bias, LutKernelOptions? kernel = null, int smallBatchRows = 8) : base(layer.Name)
    {
        Weight = PackedVqWeight.From(layer);
        if (bias is not null && (bias.dim() != 1 || bias.shape[0] != layer.Rows))
            throw new ArgumentException($"Layer '{layer.Name}': bias of shape [{string.Join(", ", bias.shape)}], [{layer.Rows}] expected.", nameof(bias));
        _bias = bias?.detach().to(ScalarType.Float32).clone().DetachFromDisposeScope();
        kernel ??= LutKernelOptions.Default;
        // Below ~512K weights per thread, waking a second thread costs more than it saves.
        int threads = (int)Math.Clamp((long)layer.Rows * layer.Columns / WeightsPerThread, 1, kernel.Threads);
        Kernel = kernel with { Threads = threads };
        SmallBatchRows = smallBatchRows;
    }

    public PackedVqWeight Weight { get; }
    public LutKernelOptions Kernel { get; }
    public int SmallBatchRows { get; }
    public long InFeatures => Weight.Columns;
    public long OutFeatures => Weight.Rows;

    public override Tensor forward(Tensor x)
    {
        if (x.shape[^1] != InFeatures)
            throw new ArgumentException($"{Weight.Name}: input has {x.shape[^1]} features, {InFeatures} expected.", nameof(x));
        using var scope = NewDisposeScope();
        long rows = x.numel() / InFeatures;
        var flat = x.reshape(rows, InFeatures).to(ScalarType.Float32);
        var y = rows <= SmallBatchRows && x.device_type == DeviceType.CPU ? LookUp(flat, (int)rows) : Decoded(flat);
        if (_bias is not null) y = y.add_(_bias.to(y.device));
        var shape = x.shape.ToArray();
        shape[^1] = OutFeatures;
        return y.reshape(shape).to(x.dtype).MoveToOuterDisposeScope();
    }

    // The activations are copied into, and the products read from, buffers this module keeps (a lock, as for the
    // slab): a decode loop then allocates no arrays per call, only the output tensor.
    private Tensor LookUp(Tensor flat, int rows)
    {
        int n = rows * (int)InFeatures, m = rows * (int)OutFeatures;
        lock (_slabLock)
        {
            var input = LutScratch.Ensure(ref _input, n);
            var output = LutScratch.Ensure(ref _output, m);
            from_array(input).narrow(0, 0, n).copy_(flat.reshape(n));
            LutKernel.Multiply(Weight, input.AsSpan(0, n), rows, output.AsSpan(0, m), Kernel);
            return from_array(output).narrow(0, 0, m).view(rows, OutFeatures).clone();
        }
    }

    private float[] _input = Array.Empty<float>(), _output = Array.Empty<float>();

    // One slab buffer per module, shared by its calls in turn (a lock): a fresh large array per call would mean a
    // full garbage collection every few calls.
    private Tensor Decoded(Tensor flat)
    {
        lock (_slabLock)
        {
            _slab ??= new float[Math.Min(SlabRows, Weight.Rows) * Weight.Columns];
            var parts = new List<Tensor>();
            for (int start = 0; start < Weight.Rows; start += SlabRows)
            {
                int count = Math.Min(SlabRows, Weight.Rows - start);
                Weight.DequantizeRows(start, count, _slab);
                // from_array shares the buffer; the product is computed before the next slab overwrites it.
                var w = from_array(_slab).narrow(0, 0, (long)count * Weight.Columns).view(count, InFeatures).to(flat.device);
                parts.Add(flat.matmul(w.t()));
            }
            return parts.Count == 1 ? parts[0] : cat(parts, 1);
        }
    }

    private readonly object _slabLock = new();
    private float[]? _slab;

    protected override void Dispose(bool disposing)
    {
        if (disposing) _bias?.Dispose();
        base.Dispose(disposing);
    }
}
