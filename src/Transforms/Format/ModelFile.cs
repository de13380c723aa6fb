using System.Buffers.Binary;
using System.Text;

namespace Msavq.MLNet.Format;

/// <summary>The kinds of file the library reads, told apart by their first bytes.</summary>
public enum ModelFileKind
{
    Unknown,
    /// <summary>An ML.NET model zip (from <see cref="MsavqPipeline.Save"/> or <c>MLContext.Model.Save</c>).</summary>
    PipelineZip,
    /// <summary>Quantized layers alone (.msavq, a safetensors container; docs/quantized-format.md).</summary>
    QuantizedLayers,
    /// <summary>A ShapesVlm checkpoint (magic "MSAVQVLM").</summary>
    ShapesVlmCheckpoint,
}

/// <summary>Says what a file is, so that handing one kind where another is expected gets a message that names both.</summary>
public static class ModelFile
{
    public static ModelFileKind Detect(string path)
    {
        Span<byte> head = stackalloc byte[64];
        int n;
        using (var fs = File.OpenRead(path)) n = fs.ReadAtLeast(head, head.Length, throwOnEndOfStream: false);
        head = head[..n];
        if (n >= 4 && head[0] == 'P' && head[1] == 'K' && head[2] == 3 && head[3] == 4) return ModelFileKind.PipelineZip;
        if (n >= 8 && head[..8].SequenceEqual("MSAVQVLM"u8)) return ModelFileKind.ShapesVlmCheckpoint;
        // safetensors: 8-byte header length, then a JSON object; ours carries "__metadata__" with format "msavq".
        if (n >= 10 && BinaryPrimitives.ReadUInt64LittleEndian(head) < QuantizedModelFile.MaxHeaderBytes && head[8] == '{')
            return ModelFileKind.QuantizedLayers;
        return ModelFileKind.Unknown;
    }

    /// <summary>Throws a <see cref="MsavqFormatException"/> that says what the file is and what was expected, unless it is <paramref name="expected"/>.</summary>
    public static void Expect(string path, ModelFileKind expected)
    {
        var actual = Detect(path);
        if (actual == expected) return;
        throw new MsavqFormatException(path, $"this is {Describe(actual)}, but {Describe(expected)} is expected" + Hint(actual, expected));
    }

    public static string Describe(ModelFileKind kind) => kind switch
    {
        ModelFileKind.PipelineZip => "a saved pipeline (an ML.NET model zip, from MsavqPipeline.Save or 'msavq quantize')",
        ModelFileKind.QuantizedLayers => "a .msavq file (quantized layers only, from SaveQuantized)",
        ModelFileKind.ShapesVlmCheckpoint => "a ShapesVlm checkpoint (full-precision model)",
        _ => "not a file this library writes",
    };

    private static string Hint(ModelFileKind actual, ModelFileKind expected) => (actual, expected) switch
    {
        (ModelFileKind.QuantizedLayers, ModelFileKind.PipelineZip) =>
            "; a .msavq file needs its base model too: MixedPrecisionVqTransformer.LoadQuantized(ml, path, baseModel, schema)",
        (ModelFileKind.PipelineZip, ModelFileKind.QuantizedLayers) => "; load a pipeline zip with MsavqPipeline.Load",
        _ => "",
    };
}
