using System.IO.Compression;
using System.Reflection;
using System.Text.Json;
using System.Text.RegularExpressions;
using Microsoft.ML;
using Microsoft.ML.Data;
using Microsoft.ML.Transforms;
using Msavq.MLNet.Format;
using Msavq.MLNet.Models;
using Msavq.MLNet.Scoring;

namespace Msavq.MLNet;

/// <summary>
/// Saving and loading a fitted MSAVQ pipeline as one ML.NET model zip (architecture.md §5). ML.NET's save context
/// is internal, so the scoring transformer saves as a <c>CustomMapping</c> with contract <see cref="ContractName"/>,
/// and what it runs rides along as extra zip entries: the quantized layers (.msavq), the rest of the model (its own
/// checkpoint format, quantized weights zeroed) and a small JSON description. <see cref="Load"/> reads them, hands the
/// model to the mapping factory, calls <c>ml.Model.Load</c>, and gives back the same typed transformer a fit does.
/// </summary>
public static class MsavqPipeline
{
    /// <summary>The CustomMapping contract; it names the loader, so a plain ml.Model.Load says what to use.</summary>
    public const string ContractName = "Msavq.MixedPrecisionVq/1 (load with MsavqPipeline.Load)";
    /// <summary>The contract of zips written before <see cref="MsavqPipeline"/> had its name; still loadable.</summary>
    internal const string LegacyContractName = "Msavq.MixedPrecisionVq/1 (load with Msavq.Load)";
    public const string QuantizedEntry = "Msavq/quantized.msavq";
    public const string BaseModelEntry = "Msavq/base-model.ckpt";
    public const string DescriptionEntry = "Msavq/pipeline.json";

    private static readonly AsyncLocal<IVqaModel?> Loading = new();

    internal static IVqaModel? ModelBeingLoaded => Loading.Value;

    /// <summary>
    /// Saves <paramref name="pipeline"/> (a chain ending in, or equal to, a <see cref="MixedPrecisionVqTransformer"/>
    /// whose model is an <see cref="IPersistableModel"/>), atomically.
    /// </summary>
    public static void Save(MLContext ml, ITransformer pipeline, DataViewSchema inputSchema, string path)
    {
        ArgumentNullException.ThrowIfNull(ml);
        var scorer = pipeline as MixedPrecisionVqTransformer
            ?? (pipeline as TransformerChain<MixedPrecisionVqTransformer>)?.LastTransformer
            ?? throw new ArgumentException("The pipeline does not end in a MixedPrecisionVqTransformer.", nameof(pipeline));
        if (scorer.Model is not IPersistableModel persistable)
            throw new NotSupportedException($"{scorer.Model.GetType().Name} has no checkpoint format (IPersistableModel); " +
                                            "save its quantized layers alone with SaveQuantized.");
        // The quantized layers live in the .msavq entry; zeroed here, they cost next to nothing once deflated.
        byte[] rest;
        using (var copy = (IDisposable)persistable.Clone())
        {
            StoredWeights.Zero((IQuantizableModel)copy, scorer.Quantized);
            rest = ((IPersistableModel)copy).Serialize();
        }
        var description = new PipelineDescription
        {
            ModelFormat = persistable.FormatName, ModelAssembly = persistable.GetType().Assembly.GetName().Name,
            ImageColumn = scorer.ImageColumn, QuestionColumn = scorer.QuestionColumn, Layers = scorer.Layers.ToList(),
        };
        AtomicFile.Write(path, temp =>
        {
            ml.Model.Save(pipeline, inputSchema, temp);
            using var zip = ZipFile.Open(temp, ZipArchiveMode.Update);
            Add(zip, QuantizedEntry, QuantizedModelFile.ToBytes(scorer.Quantized));
            Add(zip, BaseModelEntry, rest);
            Add(zip, DescriptionEntry, JsonSerializer.SerializeToUtf8Bytes(description));
        });
    }

    /// <summary>
    /// Loads what <see cref="Save"/> wrote, in any process: the chain as saved, ending in the same typed
    /// <see cref="MixedPrecisionVqTransformer"/> a fit returns (with <c>Report</c>, <c>Quantized</c> and kernels).
    /// The base model's format must be declared by a loaded or loadable assembly (<see cref="ModelFormatAttribute"/>).
    /// </summary>
    public static TransformerChain<MixedPrecisionVqTransformer> Load(MLContext ml, string path, out DataViewSchema inputSchema)
    {
        ArgumentNullException.ThrowIfNull(ml);
        if (!File.Exists(path)) throw new FileNotFoundException($"Pipeline file not found: {path}", path);
        ModelFile.Expect(path, ModelFileKind.PipelineZip);
        QuantizedModel quantized;
        PipelineDescription description;
        byte[] baseBytes;
        using (var zip = ZipFile.OpenRead(path))
        {
            quantized = QuantizedModelFile.FromBytes(Read(zip, path, QuantizedEntry), $"{path}!{QuantizedEntry}");
            baseBytes = Read(zip, path, BaseModelEntry);
            description = zip.GetEntry(DescriptionEntry) is null
                ? PipelineDescription.Legacy
                : Describe(Read(zip, path, DescriptionEntry), $"{path}!{DescriptionEntry}");
        }
        var model = ReaderFor(description, path).Read(baseBytes, $"{path}!{BaseModelEntry}");
        try
        {
            StoredWeights.Write(model, quantized, path);
            if (model is not IVqaModel vqa)
                throw new MsavqFormatException(path, $"its base model ({model.GetType().Name}) does not answer questions, so it has no scoring mapping");
            ml.ComponentCatalog.RegisterAssembly(typeof(MsavqPipeline).Assembly);
            ITransformer loaded;
            Loading.Value = vqa;
            try { loaded = ml.Model.Load(path, out inputSchema); }
            finally { Loading.Value = null; }
            var parts = loaded is IEnumerable<ITransformer> chain ? chain.ToList() : new List<ITransformer> { loaded };
            var layers = description.Layers.Count == quantized.Layers.Count ? description.Layers : QuantizedLayerReport.FromStored(quantized);
            parts[^1] = new MixedPrecisionVqTransformer(ml, model, layers, quantized, inputSchema,
                description.ImageColumn, description.QuestionColumn ?? "Question");
            return new TransformerChain<MixedPrecisionVqTransformer>(parts.ToArray());
        }
        catch
        {
            (model as IDisposable)?.Dispose();
            throw;
        }
    }

    private static void Add(ZipArchive zip, string entry, byte[] bytes)
    {
        using var s = zip.CreateEntry(entry, CompressionLevel.Optimal).Open();
        s.Write(bytes);
    }

    private static byte[] Read(ZipArchive zip, string path, string entry)
    {
        var e = zip.GetEntry(entry) ?? throw new MsavqFormatException(path, $"no '{entry}' entry: not saved by MsavqPipeline.Save");
        using var s = e.Open();
        using var m = new MemoryStream();
        s.CopyTo(m);
        return m.ToArray();
    }

    private static PipelineDescription Describe(byte[] json, string source)
    {
        try
        {
            return JsonSerializer.Deserialize<PipelineDescription>(json) ?? throw new MsavqFormatException(source, "empty description");
        }
        catch (JsonException e) { throw new MsavqFormatException(source, $"unreadable description ({e.Message})", e); }
    }

    /// <summary>
    /// The reader declared for the base model's format: first among loaded assemblies, then in the assembly the file
    /// names (a simple name, resolved by the runtime's usual probing — never a path).
    /// </summary>
    private static IModelReader ReaderFor(PipelineDescription d, string path)
    {
        static ModelFormatAttribute? Declared(IEnumerable<Assembly> assemblies, string format) => assemblies
            .SelectMany(a => a.GetCustomAttributes<ModelFormatAttribute>()).FirstOrDefault(f => f.Name == format);
        var found = Declared(AppDomain.CurrentDomain.GetAssemblies(), d.ModelFormat);
        if (found is null && d.ModelAssembly is { } name && Regex.IsMatch(name, @"^[A-Za-z0-9_.]{1,200}$"))
        {
            try { found = Declared(new[] { Assembly.Load(new AssemblyName(name)) }, d.ModelFormat); }
            catch (FileNotFoundException) { }
        }
        if (found is null)
            throw new MsavqFormatException(path, $"its base model is in format '{d.ModelFormat}', and no assembly declares a reader " +
                                                 $"for it (reference {d.ModelAssembly ?? "the assembly that defines the model"})");
        if (!typeof(IModelReader).IsAssignableFrom(found.Reader) || found.Reader.GetConstructor(Type.EmptyTypes) is null)
            throw new InvalidOperationException($"{found.Reader.FullName} (declared for '{d.ModelFormat}') must implement IModelReader with a parameterless constructor.");
        return (IModelReader)Activator.CreateInstance(found.Reader)!;
    }

    /// <summary>The pipeline.json entry: which reader rebuilds the base model, the scoring columns, the per-layer report.</summary>
    private sealed record PipelineDescription
    {
        public int Version { get; init; } = 1;
        public string ModelFormat { get; init; } = "";
        public string? ModelAssembly { get; init; }
        public string? ImageColumn { get; init; }
        public string? QuestionColumn { get; init; }
        public List<QuantizedLayerReport> Layers { get; init; } = new();

        /// <summary>Zips saved before the description existed held a ShapesVlm scored on Image and Question.</summary>
        public static PipelineDescription Legacy => new()
        {
            ModelFormat = "ShapesVlm/1", ModelAssembly = "Msavq.MLNet.Models", ImageColumn = "Image", QuestionColumn = "Question",
        };
    }
}

/// <summary>The factory ML.NET calls when it loads a saved scoring mapping; only <see cref="MsavqPipeline.Load"/> supplies the model.</summary>
[CustomMappingFactoryAttribute(MsavqPipeline.ContractName)]
public sealed class MixedPrecisionVqMappingFactory : CustomMappingFactory<VqaScoringInput, VqaScoringOutput>
{
    public override Action<VqaScoringInput, VqaScoringOutput> GetMapping() => Mapping();

    internal static Action<VqaScoringInput, VqaScoringOutput> Mapping()
    {
        var model = MsavqPipeline.ModelBeingLoaded ?? throw new InvalidOperationException(
            "This model zip holds MSAVQ-quantized layers in its own entries: load it with MsavqPipeline.Load(ml, path, out schema) " +
            "(or ml.Msavq().Load), not MLContext.Model.Load.");
        return (input, output) => MixedPrecisionVqTransformer.Score(model, input, output);
    }
}

/// <summary>The same factory under the contract name of zips saved before the rename.</summary>
[CustomMappingFactoryAttribute(MsavqPipeline.LegacyContractName)]
public sealed class LegacyMixedPrecisionVqMappingFactory : CustomMappingFactory<VqaScoringInput, VqaScoringOutput>
{
    public override Action<VqaScoringInput, VqaScoringOutput> GetMapping() => MixedPrecisionVqMappingFactory.Mapping();
}
