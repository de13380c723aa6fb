using System.IO.Compression;
using Microsoft.ML;
using Microsoft.ML.Data;
using Microsoft.ML.Transforms;
using Msavq.MLNet.Format;
using Msavq.MLNet.Models;
using Msavq.MLNet.Scoring;
using static TorchSharp.torch;

namespace Msavq.MLNet;

/// <summary>
/// Saving and loading a fitted MSAVQ pipeline as one ML.NET model zip (architecture.md §5). ML.NET's save context
/// is internal, so the scoring transformer is a <c>CustomMapping</c> with contract <see cref="ContractName"/>, and the
/// quantized layers (.msavq) and the rest of the model (checkpoint, quantized weights zeroed) ride along as extra zip
/// entries. <see cref="Load"/> reads them, hands the model to the mapping factory, then calls <c>ml.Model.Load</c>.
/// </summary>
public static class Msavq
{
    /// <summary>The CustomMapping contract; it names the loader, so a plain ml.Model.Load says what to use.</summary>
    public const string ContractName = "Msavq.MixedPrecisionVq/1 (load with Msavq.Load)";
    public const string QuantizedEntry = "Msavq/quantized.msavq";
    public const string BaseModelEntry = "Msavq/base-model.ckpt";

    private static readonly AsyncLocal<IVqaModel?> Loading = new();

    internal static IVqaModel? ModelBeingLoaded => Loading.Value;

    /// <summary>Saves <paramref name="pipeline"/> (a chain ending in, or equal to, a MixedPrecisionVqTransformer), atomically.</summary>
    public static void Save(MLContext ml, ITransformer pipeline, DataViewSchema inputSchema, string path)
    {
        var scorer = pipeline as MixedPrecisionVqTransformer
            ?? (pipeline as TransformerChain<MixedPrecisionVqTransformer>)?.LastTransformer
            ?? throw new ArgumentException("The pipeline does not end in a MixedPrecisionVqTransformer.", nameof(pipeline));
        if (scorer.Model is not ShapesVlm vlm)
            throw new NotSupportedException($"Saving needs a model with a checkpoint format; {scorer.Model.GetType().Name} has none (use SaveQuantized).");
        // The quantized layers live in the .msavq entry; zeroed here, they cost next to nothing once deflated.
        using var rest = vlm.Clone();
        using (no_grad())
            foreach (var l in rest.QuantizableLayers.Where(l => scorer.Quantized.Layers.Any(q => q.Name == l.Name)))
                l.Module.weight.zero_();
        string full = Path.GetFullPath(path);
        Directory.CreateDirectory(Path.GetDirectoryName(full)!);
        string tmp = Path.Combine(Path.GetDirectoryName(full)!, $".{Path.GetFileName(full)}.{Guid.NewGuid():N}.tmp");
        try
        {
            ml.Model.Save(pipeline, inputSchema, tmp);
            using (var zip = ZipFile.Open(tmp, ZipArchiveMode.Update))
            {
                using (var s = zip.CreateEntry(QuantizedEntry, CompressionLevel.Optimal).Open())
                    s.Write(QuantizedModelFile.ToBytes(scorer.Quantized));
                using (var s = zip.CreateEntry(BaseModelEntry, CompressionLevel.Optimal).Open())
                    s.Write(ShapesVlmCheckpoint.Serialize(rest));
            }
            File.Move(tmp, full, overwrite: true);
        }
        catch
        {
            try { File.Delete(tmp); } catch (IOException) { }
            throw;
        }
    }

    /// <summary>Loads what <see cref="Save"/> wrote; works in a fresh process.</summary>
    public static ITransformer Load(MLContext ml, string path, out DataViewSchema inputSchema)
    {
        ShapesVlm model;
        QuantizedModel quantized;
        using (var zip = ZipFile.OpenRead(path))
        {
            byte[] Read(string entry)
            {
                var e = zip.GetEntry(entry) ?? throw new MsavqFormatException(path, $"no '{entry}' entry: not saved by Msavq.Save");
                using var s = e.Open();
                using var m = new MemoryStream();
                s.CopyTo(m);
                return m.ToArray();
            }
            quantized = QuantizedModelFile.FromBytes(Read(QuantizedEntry), $"{path}!{QuantizedEntry}");
            using var baseStream = new MemoryStream(Read(BaseModelEntry));
            model = ShapesVlmCheckpoint.Load(baseStream, $"{path}!{BaseModelEntry}");
        }
        var byName = model.QuantizableLayers.ToDictionary(l => l.Name);
        foreach (var l in quantized.Layers)
        {
            if (!byName.TryGetValue(l.Name, out var target) || target.Module.out_features != l.Rows || target.Module.in_features != l.Columns)
                throw new MsavqFormatException(path, $"layer '{l.Name}' does not match the saved model");
            using var _ = no_grad();
            using var w = tensor(l.Dequantize(), new long[] { l.Rows, l.Columns }, ScalarType.Float32);
            target.Module.weight.copy_(w);
        }
        ml.ComponentCatalog.RegisterAssembly(typeof(Msavq).Assembly);
        Loading.Value = model;
        try
        {
            return ml.Model.Load(path, out inputSchema);
        }
        finally
        {
            Loading.Value = null;
        }
    }
}

/// <summary>The factory ML.NET calls when it loads a saved scoring mapping; only <see cref="Msavq.Load"/> supplies the model.</summary>
[CustomMappingFactoryAttribute(Msavq.ContractName)]
public sealed class MixedPrecisionVqMappingFactory : CustomMappingFactory<VqaScoringInput, VqaScoringOutput>
{
    public override Action<VqaScoringInput, VqaScoringOutput> GetMapping()
    {
        var model = Msavq.ModelBeingLoaded ?? throw new InvalidOperationException(
            "This model zip holds MSAVQ-quantized layers in its own entries: load it with Msavq.Load(ml, path, out schema), not MLContext.Model.Load.");
        return (input, output) => MixedPrecisionVqTransformer.Score(model, input, output);
    }
}
