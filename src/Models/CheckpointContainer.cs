using System.Security.Cryptography;

namespace Msavq.MLNet.Models;

/// <summary>
/// The container the model checkpoints share (<see cref="ShapesVlmCheckpoint"/>, <see cref="Onnx.OnnxModelCheckpoint"/>).
/// Layout (little-endian):
/// <code>
/// magic           8 bytes
/// version         u32
/// headerLength    u32, then the header (UTF-8 JSON: what the format needs to rebuild the model)
/// payloadLength   u64, then the payload (the weights, or a graph)
/// sha256          32 bytes over everything before it
/// </code>
/// </summary>
internal static class CheckpointContainer
{
    /// <summary>What <see cref="Read"/> found: where the header and the payload lie in the checked bytes.</summary>
    public readonly record struct Parts(int HeaderAt, int HeaderLength, int PayloadAt, int PayloadLength);

    public static byte[] Write(byte[] magic, uint version, byte[] header, ReadOnlySpan<byte> payload)
    {
        using var ms = new MemoryStream();
        using (var w = new BinaryWriter(ms, System.Text.Encoding.UTF8, leaveOpen: true))
        {
            w.Write(magic);
            w.Write(version);
            w.Write((uint)header.Length);
            w.Write(header);
            w.Write((ulong)payload.Length);
            w.Write(payload);
        }
        ms.Write(SHA256.HashData(ms.GetBuffer().AsSpan(0, (int)ms.Length)));
        return ms.ToArray();
    }

    /// <summary>
    /// Checks size, magic, version and checksum before anything is parsed, then the two lengths against the size.
    /// </summary>
    /// <param name="kind">What the format is, for the wrong-magic error ("a ShapesVlm checkpoint").</param>
    /// <param name="headerName">What the header holds ("config"), <paramref name="payloadName"/> the payload ("state").</param>
    /// <param name="maxHeader">The longest header the format writes.</param>
    /// <param name="bad">The exception for a reason.</param>
    public static Parts Read(byte[] bytes, byte[] magic, uint version, string kind, string headerName, string payloadName, long maxHeader,
                             Func<string, InvalidDataException> bad)
    {
        int header = magic.Length + 8;
        if (bytes.Length < header + 8 + 32) throw bad($"only {bytes.Length} bytes (truncated?)");
        if (!bytes.AsSpan(0, magic.Length).SequenceEqual(magic)) throw bad($"wrong magic (not {kind})");
        uint found = BitConverter.ToUInt32(bytes, magic.Length);
        if (found != version) throw bad($"format version {found}, this build reads {version}");
        int body = bytes.Length - 32;
        if (!SHA256.HashData(bytes.AsSpan(0, body)).AsSpan().SequenceEqual(bytes.AsSpan(body))) throw bad("checksum mismatch (truncated or corrupted)");
        uint headerLength = BitConverter.ToUInt32(bytes, magic.Length + 4);
        if (headerLength > maxHeader || header + (long)headerLength + 8 > body) throw bad($"{headerName} length beyond the end of the file");
        int payloadAt = header + (int)headerLength + 8;
        ulong payloadLength = BitConverter.ToUInt64(bytes, header + (int)headerLength);
        if ((ulong)(body - payloadAt) != payloadLength) throw bad($"{payloadName} length does not match the file size");
        return new Parts(header, (int)headerLength, payloadAt, (int)payloadLength);
    }
}
