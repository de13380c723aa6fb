using System.Runtime.CompilerServices;

namespace Msavq.MLNet;

internal static class AssemblyInit
{
    // The engine can run without touching a Transforms type first; configure the allocator from here too.
#pragma warning disable CA2255
    [ModuleInitializer]
#pragma warning restore CA2255
    internal static void OnLoad() => GlibcAllocator.Configure();
}
