namespace Msavq.MLNet;

/// <summary>
/// Writes whole files atomically: a temp file in the same folder, flushed to disk, renamed over the target, and the
/// folder flushed too, so a crash leaves either the old file or the new one. Temp files are named
/// <c>.NAME.PID.GUID.msavq-tmp</c>; ones left by a killed writer are removed by the next write to that path.
/// </summary>
public static class AtomicFile
{
    private const string Suffix = ".msavq-tmp";

    public static void Write(string path, ReadOnlySpan<byte> content)
    {
        var bytes = content.ToArray();
        Write(path, temp =>
        {
            using var fs = new FileStream(temp, FileMode.CreateNew, FileAccess.Write);
            fs.Write(bytes);
        });
    }

    /// <summary>Lets <paramref name="writeTo"/> write the temp file by path (for writers that take a path), then commits it.</summary>
    public static void Write(string path, Action<string> writeTo)
    {
        string full = Path.GetFullPath(path);
        string dir = Path.GetDirectoryName(full)!;
        Directory.CreateDirectory(dir);
        RemoveStale(dir, Path.GetFileName(full));
        string tmp = Path.Combine(dir, $".{Path.GetFileName(full)}.{Environment.ProcessId}.{Guid.NewGuid():N}{Suffix}");
        try
        {
            writeTo(tmp);
            using (var fs = new FileStream(tmp, FileMode.Open, FileAccess.ReadWrite)) fs.Flush(flushToDisk: true);
            File.Move(tmp, full, overwrite: true);
            FlushDirectory(dir);
        }
        catch
        {
            try { File.Delete(tmp); } catch (IOException) { } catch (UnauthorizedAccessException) { }
            throw;
        }
    }

    /// <summary>A DataFrame as CSV, atomically (so Ctrl+C never leaves half a file).</summary>
    public static void WriteCsv(Microsoft.Data.Analysis.DataFrame frame, string path)
    {
        using var buffer = new MemoryStream();
        Microsoft.Data.Analysis.DataFrame.SaveCsv(frame, buffer);
        Write(path, buffer.ToArray());
    }

    /// <summary>Throws a clear error now, before any work, if <paramref name="path"/> cannot be written later.</summary>
    /// <exception cref="IOException">The folder cannot be created or written, or the path is a folder.</exception>
    public static void EnsureWritable(string path, string what = "output")
    {
        string full;
        try { full = Path.GetFullPath(path); }
        catch (Exception e) when (e is ArgumentException or NotSupportedException or PathTooLongException)
        {
            throw new IOException($"The {what} path '{path}' is not a valid path: {e.Message}", e);
        }
        if (Directory.Exists(full)) throw new IOException($"The {what} path '{path}' is a folder; give a file name.");
        string dir = Path.GetDirectoryName(full)!;
        string probe = Path.Combine(dir, $".{Path.GetFileName(full)}.{Environment.ProcessId}.{Guid.NewGuid():N}{Suffix}");
        try
        {
            Directory.CreateDirectory(dir);
            using (new FileStream(probe, FileMode.CreateNew, FileAccess.Write)) { }
            File.Delete(probe);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            throw new IOException($"Cannot write the {what} '{path}': {e.Message}", e);
        }
    }

    /// <summary>Temp files of this writer for <paramref name="name"/> whose process is gone.</summary>
    private static void RemoveStale(string dir, string name)
    {
        foreach (var file in Directory.EnumerateFiles(dir, $".{name}.*{Suffix}"))
        {
            var parts = Path.GetFileName(file)[(name.Length + 2)..].Split('.');
            if (parts.Length < 2 || !int.TryParse(parts[0], out int pid) || pid == Environment.ProcessId || Alive(pid)) continue;
            try { File.Delete(file); } catch (IOException) { } catch (UnauthorizedAccessException) { }
        }
    }

    private static bool Alive(int pid)
    {
        try { using var p = System.Diagnostics.Process.GetProcessById(pid); return !p.HasExited; }
        catch (ArgumentException) { return false; }
        catch (InvalidOperationException) { return false; }
    }

    /// <summary>fsync of the folder, so the rename itself survives a power loss (no-op where folders cannot be opened).</summary>
    private static void FlushDirectory(string dir)
    {
        if (!OperatingSystem.IsLinux()) return;
        int fd = open(dir, 0 /* O_RDONLY */);
        if (fd < 0) return;
        fsync(fd);
        close(fd);
    }

    [System.Runtime.InteropServices.DllImport("libc", SetLastError = true)]
    private static extern int open(string path, int flags);
    [System.Runtime.InteropServices.DllImport("libc")]
    private static extern int fsync(int fd);
    [System.Runtime.InteropServices.DllImport("libc")]
    private static extern int close(int fd);
}
