using System.Runtime.CompilerServices;
using Msavq.Build;

namespace Msavq.MLNet.Native;

/// <summary>
/// Makes TorchSharp 0.107's native library load on systems whose libstdc++ lacks GLIBCXX_3.4.32 (Debian 12), in any
/// process that uses this library, before TorchSharp binds it (architecture.md §7). Builds in this repo, and projects
/// that reference our NuGet packages, are patched at build time (build/TorchSharpNative.targets, packed as
/// buildTransitive); this covers what a build step cannot reach: a project that references ours by project, or an
/// output copied elsewhere. It marks the one unused version need weak in the copy the application will load, and
/// does nothing where the system has the version, the copy is already weak, or the file cannot be written.
/// </summary>
public static class TorchSharpNative
{
    private static int _done;

#pragma warning disable CA2255 // must run before the first TorchSharp call of the process, which may be any of ours
    [ModuleInitializer]
#pragma warning restore CA2255
    internal static void OnLoad() => EnsureLoadable();

    /// <summary>
    /// Idempotent. Our assemblies call it when they load; call it yourself first only if your code calls TorchSharp
    /// before it touches any Msavq.MLNet type.
    /// </summary>
    public static void EnsureLoadable()
    {
        if (!OperatingSystem.IsLinux() || Interlocked.Exchange(ref _done, 1) == 1) return;
        try
        {
            if (ElfVersionNeed.SystemProvides()) return;
            foreach (var path in Candidates().Distinct())
            {
                if (!File.Exists(path)) continue;
                try { ElfVersionNeed.Weaken(path); }
                catch (Exception e) when (e is IOException or UnauthorizedAccessException or InvalidDataException) { }
            }
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException) { }
    }

    /// <summary>Where the runtime's probing finds libLibTorchSharp.so: the app folder and its RID-specific native folder.</summary>
    private static IEnumerable<string> Candidates()
    {
        const string Name = "libLibTorchSharp.so";
        string rid = System.Runtime.InteropServices.RuntimeInformation.RuntimeIdentifier.StartsWith("linux-arm64", StringComparison.Ordinal)
            ? "linux-arm64" : "linux-x64";
        var dirs = new List<string> { AppContext.BaseDirectory, Path.Combine(AppContext.BaseDirectory, "runtimes", rid, "native") };
        if (AppContext.GetData("NATIVE_DLL_SEARCH_DIRECTORIES") is string search)
            dirs.AddRange(search.Split(Path.PathSeparator, StringSplitOptions.RemoveEmptyEntries));
        return dirs.Select(d => Path.GetFullPath(Path.Combine(d, Name)));
    }
}
