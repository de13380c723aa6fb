using System.Runtime.CompilerServices;

namespace Msavq.MLNet;

internal static class ModuleInit
{
    // The reference models build TorchSharp modules in their first call; TorchSharp must find a loadable native
    // library by then (Native.TorchSharpNative), whichever of our assemblies the application touches first.
#pragma warning disable CA2255
    [ModuleInitializer]
#pragma warning restore CA2255
    internal static void OnLoad() => Native.TorchSharpNative.EnsureLoadable();
}
