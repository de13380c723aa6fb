using Msavq.MLNet.Models;
using static TorchSharp.torch;

namespace Msavq.MLNet.Format;

/// <summary>Puts stored layers into a model's Linear weights: the one place a .msavq file becomes weights.</summary>
public static class StoredWeights
{
    /// <summary>
    /// Overwrites every stored layer's weight in <paramref name="model"/> with its dequantized value, checking that
    /// each names a quantizable layer of the same shape.
    /// </summary>
    /// <exception cref="MsavqFormatException">A stored layer has no place in the model.</exception>
    public static void Write(IQuantizableModel model, QuantizedModel quantized, string source)
    {
        var byName = model.QuantizableLayers.ToDictionary(l => l.Name);
        var seen = new HashSet<string>();
        foreach (var l in quantized.Layers)
            if (!seen.Add(l.Name)) throw new MsavqFormatException(source, $"layer '{l.Name}' is stored twice (each layer is restored exactly once)");
        foreach (var l in quantized.Layers)
        {
            var target = Target(byName, l, source);
            Write(target.Module, l);
        }
    }

    /// <summary>One stored layer into one Linear (same shape).</summary>
    public static void Write(TorchSharp.Modules.Linear module, QuantizedLayer layer)
    {
        using var _ = no_grad();
        using var w = Weight(layer, module.weight.device);
        module.weight.copy_(w);
    }

    /// <summary>The stored layer's weight as a float32 tensor [rows, columns] on <paramref name="device"/>.</summary>
    public static Tensor Weight(QuantizedLayer layer, Device device)
    {
        using var cpu = tensor(layer.Dequantize(), new long[] { layer.Rows, layer.Columns }, ScalarType.Float32);
        return cpu.to(device);
    }

    /// <summary>Zeroes the weights of the stored layers (what a saved checkpoint need not repeat).</summary>
    public static void Zero(IQuantizableModel model, QuantizedModel quantized)
    {
        var byName = model.QuantizableLayers.ToDictionary(l => l.Name);
        using var _ = no_grad();
        foreach (var l in quantized.Layers) Target(byName, l, "the model").Module.weight.zero_();
    }

    private static QuantizableLayer Target(Dictionary<string, QuantizableLayer> byName, QuantizedLayer l, string source)
    {
        if (!byName.TryGetValue(l.Name, out var target))
            throw new MsavqFormatException(source, $"layer '{l.Name}' is not a quantizable layer of the model");
        if (target.Module.out_features != l.Rows || target.Module.in_features != l.Columns)
            throw new MsavqFormatException(source, $"layer '{l.Name}' is {l.Rows}×{l.Columns} stored but " +
                                                   $"{target.Module.out_features}×{target.Module.in_features} in the model");
        return target;
    }
}
