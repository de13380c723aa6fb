using System.Runtime.InteropServices;

namespace Msavq.MLNet;

/// <summary>
/// glibc's mmap threshold, pinned on request (an opt-in: it is process-wide, so a library never sets it for its host;
/// the msavq CLI and the benchmarks call <see cref="Configure"/> at start). libtorch allocates and frees many large
/// CPU buffers; glibc raises its mmap threshold after each freed mmapped block (up to 32 MiB), after which such
/// buffers come from the heap and fragment it: quantizing a 4096×4096 layer grew past 24 GiB resident. With the
/// threshold fixed at 128 KiB the same run stays near 2 GiB (bench/RESULTS.md). Same effect as
/// MALLOC_MMAP_THRESHOLD_=131072 in the environment, which is what an application that hosts the library should set.
/// </summary>
public static class GlibcAllocator
{
    private const int MTrimThreshold = -1, MMmapThreshold = -3;

    /// <summary>The threshold for quantizing large layers.</summary>
    public const int QuantizationThreshold = 128 * 1024;

    /// <summary>
    /// The largest threshold glibc accepts on 64-bit: every buffer below 32 MiB is reused from the heap. Right for
    /// training, whose many mid-sized activations (1–8 MiB) repeat every step: with 128 KiB each one is a fresh
    /// mmap the kernel zeroes, and ShapesVlm trained at less than half the steps per second, the time in the kernel.
    /// </summary>
    public const int TrainingThreshold = 32 * 1024 * 1024;

    /// <summary>
    /// Sets the mmap (and trim) threshold for the whole process; idempotent; nothing calls it unasked. An explicit
    /// MALLOC_MMAP_THRESHOLD_ in the environment wins.
    /// </summary>
    public static void Configure(int mmapThresholdBytes = QuantizationThreshold)
    {
        if (!OperatingSystem.IsLinux() || Environment.GetEnvironmentVariable("MALLOC_MMAP_THRESHOLD_") != null) return;
        try
        {
            mallopt(MMmapThreshold, mmapThresholdBytes);
            mallopt(MTrimThreshold, Math.Max(mmapThresholdBytes, QuantizationThreshold));
        }
        catch (Exception e) when (e is DllNotFoundException or EntryPointNotFoundException)
        {
            // Not glibc (e.g. musl): nothing to configure.
        }
    }

    [DllImport("libc", EntryPoint = "mallopt")]
    private static extern int mallopt(int param, int value);
}
