namespace Msavq.MLNet;

/// <summary>
/// An <see cref="IProgress{T}"/> that reports on the calling thread, at once: <see cref="Progress{T}"/> posts to the
/// thread pool or a synchronization context, so its reports lag behind the work and may arrive after it ended.
/// </summary>
public sealed class ImmediateProgress<T>(Action<T> report) : IProgress<T>
{
    public void Report(T value) => report(value);
}
