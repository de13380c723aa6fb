using System.Security.Cryptography;
using System.Text;
using Msavq.MLNet.Models;
using TorchSharp;
using static TorchSharp.torch;

namespace Msavq.MLNet.Format;

/// <summary>
/// Binds quantized layers to the model they were quantized from: a SHA-256 over that model's state that is not
/// quantized — every parameter and buffer by name, dtype, shape and bytes, in name order, with each quantized layer's
/// weight replaced by its name alone. The quantized model, the full-precision model it came from, and the zeroed
/// checkpoint a pipeline zip carries all give the same value; another model (or another set of quantized layers) does
/// not. Stored in the .msavq manifest's options under <see cref="OptionKey"/>.
/// </summary>
public static class BaseModelFingerprint
{
    public const string OptionKey = "base_model_sha256";

    /// <summary>The fingerprint, or null for a model that is not a TorchSharp module (nothing to hash).</summary>
    /// <exception cref="MsavqFormatException">A quantized layer is not one of the model's quantizable layers.</exception>
    public static string? Compute(IQuantizableModel model, IEnumerable<string> quantizedLayers, string source = "the model")
    {
        ArgumentNullException.ThrowIfNull(model);
        if (model is not nn.Module module) return null;
        var byName = model.QuantizableLayers.ToDictionary(l => l.Name);
        // A layer's name in the model contract need not be its module path: the weight's state name is found by module.
        var paths = module.named_modules().ToList();
        var excluded = new Dictionary<string, string>();   // state name of a quantized weight → layer name
        foreach (string name in quantizedLayers)
        {
            if (!byName.TryGetValue(name, out var l)) throw new MsavqFormatException(source, $"layer '{name}' is not a quantizable layer of the model");
            var path = paths.FirstOrDefault(m => ReferenceEquals(m.module, l.Module)).name
                ?? throw new MsavqFormatException(source, $"layer '{name}' is not a module of the model");
            excluded[path.Length == 0 ? "weight" : path + ".weight"] = name;
        }
        using var hash = IncrementalHash.CreateHash(HashAlgorithmName.SHA256);
        void Text(string s) { var b = Encoding.UTF8.GetBytes(s); hash.AppendData(BitConverter.GetBytes(b.Length)); hash.AppendData(b); }
        var state = module.named_parameters().Select(p => (p.name, (Tensor)p.parameter))
            .Concat(module.named_buffers().Select(b => (b.name, b.buffer)))
            .OrderBy(s => s.Item1, StringComparer.Ordinal);
        foreach (var (name, t) in state)
        {
            Text(name);
            if (excluded.TryGetValue(name, out var quantized)) { Text($"quantized:{quantized}"); continue; }
            Text($"{t.dtype}[{string.Join(",", t.shape)}]");
            using var scope = NewDisposeScope();
            hash.AppendData(t.detach().cpu().contiguous().bytes);
        }
        return Convert.ToHexString(hash.GetHashAndReset()).ToLowerInvariant();
    }

    /// <summary>
    /// Checks <paramref name="model"/> against the fingerprint <paramref name="quantized"/> recorded, if it recorded one
    /// (files written before fingerprints load as before).
    /// </summary>
    /// <exception cref="MsavqFormatException">The model is not the one the layers were quantized from.</exception>
    public static void Check(IQuantizableModel model, QuantizedModel quantized, string source)
    {
        if (!quantized.Options.TryGetValue(OptionKey, out var recorded)) return;
        var actual = Compute(model, quantized.Layers.Select(l => l.Name), source);
        if (actual is not null && actual != recorded)
            throw new MsavqFormatException(source,
                $"the base model is not the model its {quantized.Layers.Count} quantized layers were quantized from " +
                $"(SHA-256 of its state that is not quantized is {actual[..16]}…, the layers were quantized from {recorded[..Math.Min(16, recorded.Length)]}…)");
    }

}
