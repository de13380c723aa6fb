namespace Msavq.MLNet.Format;

/// <summary>A quantized-model file that cannot be read: which file, and why. The only exception the loader throws for bad content.</summary>
public sealed class MsavqFormatException(string file, string reason, Exception? inner = null)
    : Exception($"{file}: {reason}", inner)
{
    public string File { get; } = file;
    public string Reason { get; } = reason;
}
