using Msavq.MLNet.Kernels;

namespace Msavq.MLNet.Models;

public sealed partial class ShapesVlm
{
    /// <summary>
    /// Swaps in a <see cref="QuantizedLinear"/> for every stored layer the look-up kernels run (vector-quantized,
    /// K ≤ 256), freeing its fp32 Linear; the others keep their decoded weights. For inference: afterwards the
    /// swapped layers leave <see cref="QuantizableLayers"/> and the model cannot be cloned. Returns how many were swapped.
    /// <paramref name="smallBatchRows"/>: most activation rows per call that take the look-up kernel (decoding);
    /// <paramref name="exactLayers"/>: layers too sensitive for int8 tables, which get float32 ones.
    /// </summary>
    public int UseLookupKernels(Format.QuantizedModel quantized, LutKernelOptions? kernel = null, int smallBatchRows = 8,
                                IEnumerable<string>? exactLayers = null)
    {
        ArgumentNullException.ThrowIfNull(quantized);
        var byName = QuantizableLayers.ToDictionary(l => l.Name);
        var exact = exactLayers?.ToHashSet() ?? new HashSet<string>();
        if (exact.FirstOrDefault(n => quantized.Layers.All(l => l.Name != n)) is { } unknown)
            throw new ArgumentException($"'{unknown}' in exactLayers is not a stored layer.", nameof(exactLayers));
        kernel ??= LutKernelOptions.Default;
        var exactKernel = kernel with { ExactLookups = true };
        int swapped = 0;
        foreach (var layer in quantized.Layers)
        {
            if (!PackedVqWeight.Supports(layer, out _)) continue;
            if (!byName.TryGetValue(layer.Name, out var target))
                throw new ArgumentException($"Layer '{layer.Name}' is not a quantizable layer of this model.", nameof(quantized));
            if (target.Module.out_features != layer.Rows || target.Module.in_features != layer.Columns)
                throw new ArgumentException($"Layer '{layer.Name}' is {layer.Rows}×{layer.Columns} stored but {target.Module.out_features}×{target.Module.in_features} here.", nameof(quantized));
            var old = ModuleReplacement.Replace(this, layer.Name, new QuantizedLinear(layer, target.Module.bias, exact.Contains(layer.Name) ? exactKernel : kernel, smallBatchRows));
            old.Dispose();
            swapped++;
        }
        _lookupLayers += swapped;
        _quantizable = null;
        return swapped;
    }
}
