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
using static TorchSharp.torch;

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

    private static readonly AsyncLocal<IQuantizableModel?> Loading = new();

    internal static IQuantizableModel? ModelBeingLoaded => Loading.Value;

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
        // The layers are bound to this model: its fingerprint (the state that is not quantized) goes into the manifest.
        var quantized = scorer.Quantized;
        if (!quantized.Options.ContainsKey(BaseModelFingerprint.OptionKey)
            && BaseModelFingerprint.Compute(scorer.Model, quantized.Layers.Select(l => l.Name)) is { } fingerprint)
            quantized = quantized with
            {
                Options = new Dictionary<string, string>(quantized.Options) { [BaseModelFingerprint.OptionKey] = fingerprint },
            };
        // The quantized layers live in the .msavq entry; zeroed here, they cost next to nothing once deflated.
        byte[] rest;
        using (var copy = (IDisposable)persistable.Clone())
        {
            StoredWeights.Zero((IQuantizableModel)copy, quantized);
            rest = ((IPersistableModel)copy).Serialize();
        }
        byte[] layers = QuantizedModelFile.ToBytes(quantized);
        var description = new PipelineDescription
        {
            ModelFormat = persistable.FormatName, ModelAssembly = persistable.GetType().Assembly.GetName().Name,
            ImageColumn = scorer.ImageColumn, QuestionColumn = scorer.QuestionColumn, Layers = scorer.Layers.ToList(),
            FeatureColumn = scorer.FeatureColumn, FeatureInputColumn = scorer.FeatureInputColumn,
            QuantizedBytes = layers.LongLength, BaseModelBytes = rest.LongLength,
        };
        AtomicFile.Write(path, temp =>
        {
            ml.Model.Save(pipeline, inputSchema, temp);
            using var zip = ZipFile.Open(temp, ZipArchiveMode.Update);
            Add(zip, QuantizedEntry, layers);
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
        ModelFormatAttribute format;
        byte[] baseBytes;
        // Entries are inflated only after their declared sizes pass the limits the description and the manifest set,
        // and never past those sizes (a small zip can declare, or inflate to, gigabytes).
        try
        {
            using var zip = ZipFile.OpenRead(path);
            description = zip.GetEntry(DescriptionEntry) is { } d
                ? Describe(ReadEntry(d, path, Limits.Description, "{"u8), $"{path}!{DescriptionEntry}")
                : PipelineDescription.Legacy;
            format = FormatFor(description, path);
            quantized = QuantizedModelFile.FromBytes(ReadQuantized(Entry(zip, path, QuantizedEntry), path, description.QuantizedBytes),
                                                     $"{path}!{QuantizedEntry}");
            // The zeroed layers deflate to nothing: what the base entry may inflate to beyond its compressed size.
            long zeroed = quantized.Layers.Sum(l => (long)l.Rows * l.Columns * sizeof(float));
            baseBytes = ReadEntry(Entry(zip, path, BaseModelEntry), path, Limits.Inflated(Entry(zip, path, BaseModelEntry), zeroed),
                                  format.Magic is { } magic ? System.Text.Encoding.ASCII.GetBytes(magic) : default, description.BaseModelBytes);
        }
        catch (InvalidDataException e) { throw new MsavqFormatException(path, $"not a readable zip ({e.Message})", e); }
        var model = NewReader(format).Read(baseBytes, $"{path}!{BaseModelEntry}");
        try
        {
            CheckLayers(model, quantized, description, path);
            StoredWeights.Write(model, quantized, path);
            bool scores = model is IVqaModel && description.ImageColumn is not null;
            if (!scores && description.FeatureColumn is null)
                throw new MsavqFormatException(path, $"its base model ({model.GetType().Name}) does not answer questions and the pipeline adds no " +
                                                     "feature column, so it has no scoring mapping");
            if (description.FeatureColumn is not null && model is not IFeatureModel)
                throw new MsavqFormatException(path, $"{DescriptionEntry} names a feature column '{description.FeatureColumn}', but its base model " +
                                                     $"({model.GetType().Name}) maps rows to no vectors");
            ml.ComponentCatalog.RegisterAssembly(typeof(MsavqPipeline).Assembly);
            ITransformer loaded;
            Loading.Value = model;
            try { loaded = ml.Model.Load(path, out inputSchema); }
            finally { Loading.Value = null; }
            var parts = loaded is IEnumerable<ITransformer> chain ? chain.ToList() : new List<ITransformer> { loaded };
            var layers = description.Layers.Count > 0 ? description.Layers : QuantizedLayerReport.FromStored(quantized);
            parts[^1] = new MixedPrecisionVqTransformer(ml, model, layers, quantized, inputSchema,
                description.ImageColumn, description.QuestionColumn ?? "Question", description.FeatureColumn, description.FeatureInputColumn);
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

    /// <summary>
    /// Every layer the base model's checkpoint zeroed is restored exactly once: the description and the manifest
    /// name the same layers, no quantizable layer is left at zero, and the base model is the one the layers were
    /// quantized from (<see cref="BaseModelFingerprint"/>, when the manifest records it).
    /// </summary>
    private static void CheckLayers(IQuantizableModel model, QuantizedModel quantized, PipelineDescription description, string path)
    {
        var stored = quantized.Layers.Select(l => l.Name).ToList();
        if (description.Layers.Count > 0 && !description.Layers.Select(l => l.Layer).SequenceEqual(stored))
            throw new MsavqFormatException(path, $"{DescriptionEntry} describes {description.Layers.Count} quantized layers but " +
                                                 $"{QuantizedEntry} stores {stored.Count}, or others: the entries disagree");
        var restored = stored.ToHashSet();
        foreach (var l in model.QuantizableLayers)
        {
            if (restored.Contains(l.Name)) continue;
            using var _ = no_grad();
            if (l.Module.weight.numel() > 0 && !l.Module.weight.any().item<bool>())
                throw new MsavqFormatException(path, $"layer '{l.Name}' is zeroed in {BaseModelEntry} but no stored layer restores it " +
                                                     "(a layer dropped from the manifest?)");
        }
        BaseModelFingerprint.Check(model, quantized, $"{path}!{BaseModelEntry}");
    }

    /// <summary>Size limits of the zip entries (docs/quantized-format.md, "Inside an ML.NET model zip").</summary>
    private static class Limits
    {
        public const long Description = 16 << 20;
        /// <summary>A byte array holds no more.</summary>
        public static readonly long Entry = Array.MaxLength;
        /// <summary>Weights, codes and JSON deflate by a small factor; only the zeroed layers by more.</summary>
        public const int CompressionRatio = 64;
        public const long Slack = 16 << 20;

        /// <summary>What an entry of <paramref name="compressed"/> bytes may inflate to, given <paramref name="zeroed"/> bytes of zeros.</summary>
        public static long Inflated(ZipArchiveEntry e, long zeroed) =>
            Math.Min(Entry, checked(e.CompressedLength * CompressionRatio + zeroed + Slack));
    }

    private static ZipArchiveEntry Entry(ZipArchive zip, string path, string entry) =>
        zip.GetEntry(entry) ?? throw new MsavqFormatException(path, $"no '{entry}' entry: not saved by MsavqPipeline.Save");

    /// <summary>
    /// The quantized layers' entry: its safetensors header is read first (length, magic, the data it declares), and the
    /// entry must be exactly that long — and as long as the description recorded, when it did.
    /// </summary>
    private static byte[] ReadQuantized(ZipArchiveEntry e, string path, long? recorded)
    {
        string source = $"{path}!{e.FullName}";
        if (recorded is { } r && r != e.Length)
            throw new MsavqFormatException(source, $"the entry declares {e.Length:N0} bytes but {DescriptionEntry} recorded {r:N0}");
        if (e.Length < 9 || e.Length > Limits.Entry) throw new MsavqFormatException(source, $"the entry declares {e.Length:N0} bytes");
        using var s = e.Open();
        var prefix = new byte[8];
        s.ReadExactly(prefix);
        ulong headerLength = System.Buffers.Binary.BinaryPrimitives.ReadUInt64LittleEndian(prefix);
        if (headerLength > (ulong)QuantizedModelFile.MaxHeaderBytes || 8 + (long)headerLength > e.Length)
            throw new MsavqFormatException(source, $"not an MSAVQ file: header length {headerLength} (wrong magic, or corrupted)");
        var bytes = new byte[8 + (long)headerLength];
        prefix.CopyTo(bytes, 0);
        ReadFully(s, bytes.AsSpan(8), source);
        if (headerLength == 0 || bytes[8] != '{') throw new MsavqFormatException(source, "not an MSAVQ file: the header is not JSON (wrong magic)");
        long total = checked(8 + (long)headerLength + SafetensorsContainer.DeclaredDataLength(bytes.AsSpan(8), source));
        if (total != e.Length) throw new MsavqFormatException(source, $"the entry declares {e.Length:N0} bytes but its header describes {total:N0}");
        if (total > Limits.Inflated(e, 0))
            throw new MsavqFormatException(source, $"{e.CompressedLength:N0} compressed bytes declare {total:N0}: more than quantized layers inflate to");
        Array.Resize(ref bytes, (int)total);
        ReadFully(s, bytes.AsSpan(8 + (int)headerLength), source);
        EnsureEnd(s, source);
        return bytes;
    }

    /// <summary>An entry of at most <paramref name="limit"/> bytes (exactly <paramref name="recorded"/> when known) that starts with <paramref name="magic"/>.</summary>
    private static byte[] ReadEntry(ZipArchiveEntry e, string path, long limit, ReadOnlySpan<byte> magic, long? recorded = null)
    {
        string source = $"{path}!{e.FullName}";
        if (recorded is { } r && r != e.Length)
            throw new MsavqFormatException(source, $"the entry declares {e.Length:N0} bytes but {DescriptionEntry} recorded {r:N0}");
        if (e.Length > limit)
            throw new MsavqFormatException(source, $"the entry declares {e.Length:N0} bytes from {e.CompressedLength:N0} compressed; " +
                                                   $"at most {limit:N0} expected (corrupted, or not saved by MsavqPipeline.Save)");
        if (e.Length < magic.Length) throw new MsavqFormatException(source, $"truncated: {e.Length} bytes");
        var bytes = new byte[e.Length];
        using var s = e.Open();
        ReadFully(s, bytes.AsSpan(0, magic.Length), source);
        if (!bytes.AsSpan(0, magic.Length).SequenceEqual(magic))
            throw new MsavqFormatException(source, "wrong magic: the entry does not start as its format does");
        ReadFully(s, bytes.AsSpan(magic.Length), source);
        EnsureEnd(s, source);
        return bytes;
    }

    private static void ReadFully(Stream s, Span<byte> into, string source)
    {
        if (s.ReadAtLeast(into, into.Length, throwOnEndOfStream: false) < into.Length)
            throw new MsavqFormatException(source, "truncated: the entry inflates to fewer bytes than it declares");
    }

    /// <summary>The entry must end where it said it would: inflating past the declared size is refused, not buffered.</summary>
    private static void EnsureEnd(Stream s, string source)
    {
        if (s.ReadByte() != -1) throw new MsavqFormatException(source, "the entry inflates to more bytes than it declares");
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
    private static ModelFormatAttribute FormatFor(PipelineDescription d, string path)
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
        return found;
    }

    private static IModelReader NewReader(ModelFormatAttribute format) => (IModelReader)Activator.CreateInstance(format.Reader)!;

    /// <summary>The pipeline.json entry: which reader rebuilds the base model, the scoring columns, the per-layer report.</summary>
    private sealed record PipelineDescription
    {
        public int Version { get; init; } = 1;
        public string ModelFormat { get; init; } = "";
        public string? ModelAssembly { get; init; }
        public string? ImageColumn { get; init; }
        public string? QuestionColumn { get; init; }
        public List<QuantizedLayerReport> Layers { get; init; } = new();
        /// <summary>Sizes of the two entries as written (null in zips written before they were recorded).</summary>
        public long? QuantizedBytes { get; init; }
        public long? BaseModelBytes { get; init; }
        /// <summary>The vector column a feature model adds and the column it reads (null in zips without one).</summary>
        public string? FeatureColumn { get; init; }
        public string? FeatureInputColumn { get; init; }

        /// <summary>Zips saved before the description existed held a ShapesVlm scored on Image and Question.</summary>
        public static PipelineDescription Legacy => new()
        {
            ModelFormat = "ShapesVlm/1", ModelAssembly = "Msavq.MLNet.Models", ImageColumn = "Image", QuestionColumn = "Question",
        };
    }
}

/// <summary>The factory ML.NET calls when it loads a saved scoring mapping; only <see cref="MsavqPipeline.Load"/> supplies the model.</summary>
/// <remarks>
/// Under a plain <c>MLContext.Model.Load</c> it throws an <see cref="InvalidOperationException"/> naming
/// <see cref="MsavqPipeline.Load"/>. ML.NET constructs saved components by reflection, so the caller sees it as the base
/// exception inside two <see cref="System.Reflection.TargetInvocationException"/>s (<c>e.GetBaseException().Message</c>);
/// nothing a factory does can lift it to the top (docs/quantized-format.md).
/// </remarks>
[CustomMappingFactoryAttribute(MsavqPipeline.ContractName)]
public sealed class MixedPrecisionVqMappingFactory : CustomMappingFactory<VqaScoringInput, VqaScoringOutput>
{
    public override Action<VqaScoringInput, VqaScoringOutput> GetMapping() => Mapping();

    internal static Action<VqaScoringInput, VqaScoringOutput> Mapping()
    {
        var model = Model<IVqaModel>();
        return (input, output) => MixedPrecisionVqTransformer.Score(model, input, output);
    }

    /// <summary>The model <see cref="MsavqPipeline.Load"/> is loading, as the saved mapping needs it.</summary>
    internal static T Model<T>() where T : class, IQuantizableModel
    {
        var model = MsavqPipeline.ModelBeingLoaded ?? throw new InvalidOperationException(
            "This model zip holds MSAVQ-quantized layers in its own entries: load it with MsavqPipeline.Load(ml, path, out schema) " +
            "(or ml.Msavq().Load), not MLContext.Model.Load.");
        return model as T ?? throw new InvalidOperationException($"The saved mapping needs a {typeof(T).Name}; the pipeline's model is a {model.GetType().Name}.");
    }
}

/// <summary>The factory ML.NET calls when it loads a saved feature mapping of a text model (as <see cref="MixedPrecisionVqMappingFactory"/>).</summary>
[CustomMappingFactoryAttribute(FeatureScoring.TextContract)]
public sealed class TextFeatureMappingFactory : CustomMappingFactory<TextFeatureInput, FeatureOutput>
{
    public override Action<TextFeatureInput, FeatureOutput> GetMapping()
    {
        var model = MixedPrecisionVqMappingFactory.Model<IFeatureModel>();
        return (input, output) => output.Features = FeatureScoring.Score(model, new ModelRow(Array.Empty<byte>(), input.Text));
    }
}

/// <summary>The factory ML.NET calls when it loads a saved feature mapping of an image model (as <see cref="MixedPrecisionVqMappingFactory"/>).</summary>
[CustomMappingFactoryAttribute(FeatureScoring.ImageContract)]
public sealed class ImageFeatureMappingFactory : CustomMappingFactory<ImageFeatureInput, FeatureOutput>
{
    public override Action<ImageFeatureInput, FeatureOutput> GetMapping()
    {
        var model = MixedPrecisionVqMappingFactory.Model<IFeatureModel>();
        return (input, output) => output.Features = FeatureScoring.Score(model, new ModelRow(input.Image, ""));
    }
}

/// <summary>The same factory under the contract name of zips saved before the rename.</summary>
[CustomMappingFactoryAttribute(MsavqPipeline.LegacyContractName)]
public sealed class LegacyMixedPrecisionVqMappingFactory : CustomMappingFactory<VqaScoringInput, VqaScoringOutput>
{
    public override Action<VqaScoringInput, VqaScoringOutput> GetMapping() => MixedPrecisionVqMappingFactory.Mapping();
}
