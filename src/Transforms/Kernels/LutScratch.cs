namespace Msavq.MLNet.Kernels;

/// <summary>
/// One thread's scratch for <see cref="LutKernel"/>: permuted activations, per-share outputs and look-up tables, grown
/// to the largest layer seen and then reused, so steady-state decoding allocates no arrays. Thread-static: workers of
/// a parallel call each use their own tables; the calling thread's activations and shares live until its call ends.
/// </summary>
internal sealed class LutScratch
{
    [ThreadStatic] private static LutScratch? _current;

    /// <summary>This thread's scratch, for a worker's tables (a worker runs one share at a time).</summary>
    public static LutScratch Current => _current ??= new LutScratch();

    /// <summary>
    /// This thread's scratch for one whole call's activations and shares, or a fresh one if a call on this thread is
    /// still in flight (a thread waiting in Parallel.For may run other work inline); give it back with <see cref="Return"/>.
    /// </summary>
    public static LutScratch Rent()
    {
        var s = Current;
        if (s._busy) return new LutScratch { _busy = true };
        s._busy = true;
        return s;
    }

    public static void Return(LutScratch scratch) => scratch._busy = false;

    private bool _busy;

    public float[] Input = Array.Empty<float>();
    public float[][] Partial = Array.Empty<float[]>();
    public float[] Table = Array.Empty<float>();
    public sbyte[] Quantized = Array.Empty<sbyte>();
    public float[] Scales = Array.Empty<float>();
    public float[] Max = Array.Empty<float>();

    /// <summary><paramref name="buffer"/>, replaced by a larger one when it holds fewer than <paramref name="length"/> items.</summary>
    public static T[] Ensure<T>(ref T[] buffer, int length)
    {
        if (buffer is null || buffer.Length < length) buffer = new T[length];
        return buffer;
    }
}
