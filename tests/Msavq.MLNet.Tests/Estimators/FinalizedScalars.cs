using System.Diagnostics;
using System.Diagnostics.Tracing;
using System.Runtime.CompilerServices;
using TorchSharp;

namespace Msavq.MLNet.Tests.Estimators;

/// <summary>
/// Counts the TorchSharp <see cref="Scalar"/>s that reach the finalizer, from the runtime's FinalizeObject events. A
/// disposed Scalar never does (Dispose suppresses finalization), so every one counted was implicit — made by an
/// operator (<c>t * 2</c>, <c>t.clamp_min(0)</c>, the alpha = 1 of <c>a + b</c>) and left to the finalizer, which can
/// free it while libtorch still reads it (the race RmsNorm's comment describes).
/// </summary>
internal sealed class FinalizedScalars : EventListener
{
    private static readonly long ScalarType = typeof(Scalar).TypeHandle.Value;
    private static readonly long MarkerType = typeof(Marker).TypeHandle.Value;
    private int _scalars, _markers;

    protected override void OnEventSourceCreated(EventSource source)
    {
        // FinalizeObject is a verbose event of the GC keyword (0x1).
        if (source.Name == "Microsoft-Windows-DotNETRuntime") EnableEvents(source, EventLevel.Verbose, (EventKeywords)0x1);
    }

    protected override void OnEventWritten(EventWrittenEventArgs e)
    {
        if (e.EventName is null || !e.EventName.StartsWith("FinalizeObject", StringComparison.Ordinal) || e.PayloadNames is null) return;
        int at = e.PayloadNames.IndexOf("TypeID");
        if (at < 0 || e.Payload?[at] is not IntPtr type) return;
        if ((long)type == ScalarType) Interlocked.Increment(ref _scalars);
        else if ((long)type == MarkerType) Interlocked.Increment(ref _markers);
    }

    /// <summary>Scalars finalized while <paramref name="action"/> ran (garbage from before is finalized first).</summary>
    public int During(Action action)
    {
        int before = Settle();
        action();
        return Settle() - before;
    }

    /// <summary>
    /// Collects, runs the pending finalizers, and waits until their events have been delivered: a marker object is
    /// finalized after them on the same thread, so once its event is seen the earlier ones have been counted.
    /// </summary>
    private int Settle()
    {
        GC.Collect();
        GC.WaitForPendingFinalizers();
        int markers = Volatile.Read(ref _markers);
        DropMarker();
        GC.Collect();
        GC.WaitForPendingFinalizers();
        var clock = Stopwatch.StartNew();
        while (Volatile.Read(ref _markers) == markers)
        {
            if (clock.Elapsed > TimeSpan.FromSeconds(30)) throw new TimeoutException("No FinalizeObject event arrived: the runtime's events are not reaching this listener.");
            Thread.Sleep(10);
        }
        return Volatile.Read(ref _scalars);
    }

    [MethodImpl(MethodImplOptions.NoInlining)]
    private static void DropMarker() => _ = new Marker();

    private sealed class Marker
    {
        ~Marker() { }
    }
}
