using System.Text;
using Msavq.Build;

namespace Msavq.MLNet.Tests.Build;

[TestClass]
public sealed class WeakenGlibcxxVersionNeedTests
{
    public TestContext TestContext { get; set; } = null!;

    /// <summary>The pristine library as NuGet restored it (the copies in bin/ are already patched by the build).</summary>
    private static string PristineLibrary()
    {
        string root = Environment.GetEnvironmentVariable("NUGET_PACKAGES")
                      ?? Path.Combine(Environment.GetFolderPath(Environment.SpecialFolder.UserProfile), ".nuget", "packages");
        string path = Path.Combine(root, "torchsharp", "0.107.0", "runtimes", "linux-x64", "native", "libLibTorchSharp.so");
        Assert.IsTrue(File.Exists(path), $"restored TorchSharp native library not found at {path}");
        return path;
    }

    private string CopyToTemp(string source)
    {
        string dir = Path.Combine(Path.GetTempPath(), "msavq-elf-" + Guid.NewGuid().ToString("N"));
        Directory.CreateDirectory(dir);
        string copy = Path.Combine(dir, Path.GetFileName(source));
        File.Copy(source, copy);
        return copy;
    }

    [TestMethod]
    public void Weaken_SetsOnlyTheWeakFlagOfThatEntry()
    {
        string copy = CopyToTemp(PristineLibrary());
        byte[] before = File.ReadAllBytes(copy);
        Assert.IsFalse(ElfVersionNeed.IsWeak(copy));

        Assert.AreEqual(ElfPatchResult.Patched, ElfVersionNeed.Weaken(copy));

        byte[] after = File.ReadAllBytes(copy);
        Assert.AreEqual(before.Length, after.Length);
        var changed = Enumerable.Range(0, before.Length).Where(i => before[i] != after[i]).ToList();
        Assert.HasCount(1, changed, "exactly one byte (the low byte of vna_flags) changes");
        Assert.AreEqual(0x2, after[changed[0]] ^ before[changed[0]], "only VER_FLG_WEAK is set");
        Assert.IsTrue(ElfVersionNeed.IsWeak(copy));
        Assert.IsFalse(ElfVersionNeed.IsWeak(copy, "GLIBCXX_3.4.30"), "other version needs stay hard");
    }

    [TestMethod]
    public void Weaken_SecondTime_IsANoOp()
    {
        string copy = CopyToTemp(PristineLibrary());
        ElfVersionNeed.Weaken(copy);
        byte[] once = File.ReadAllBytes(copy);
        var stamp = File.GetLastWriteTimeUtc(copy);

        Assert.AreEqual(ElfPatchResult.AlreadyWeak, ElfVersionNeed.Weaken(copy));
        CollectionAssert.AreEqual(once, File.ReadAllBytes(copy));
        Assert.AreEqual(stamp, File.GetLastWriteTimeUtc(copy));
    }

    [TestMethod]
    public void Weaken_NonElfFile_ThrowsNamingTheFile()
    {
        string path = Path.Combine(Path.GetTempPath(), $"not-elf-{Guid.NewGuid():N}.so");
        File.WriteAllText(path, "this is not a shared library, just text long enough to pass the size check .....");
        var e = Assert.ThrowsExactly<InvalidDataException>(() => ElfVersionNeed.Weaken(path));
        StringAssert.Contains(e.Message, path);
        StringAssert.Contains(e.Message, "not an ELF");
    }

    [TestMethod]
    public void Weaken_TruncatedElf_ThrowsInsteadOfCrashing()
    {
        string copy = CopyToTemp(PristineLibrary());
        byte[] head = File.ReadAllBytes(copy).AsSpan(0, 4096).ToArray();
        File.WriteAllBytes(copy, head);
        var e = Assert.ThrowsExactly<InvalidDataException>(() => ElfVersionNeed.Weaken(copy));
        StringAssert.Contains(e.Message, copy);
    }

    [TestMethod]
    public void Weaken_VersionUsedByAnotherSymbol_IsRefused()
    {
        string copy = CopyToTemp(PristineLibrary());
        byte[] bytes = File.ReadAllBytes(copy);
        // Rename the one symbol that needs the version: the patcher must then refuse, since weakening
        // a version that a real symbol needs would turn a load failure into a crash later.
        byte[] name = Encoding.ASCII.GetBytes(ElfVersionNeed.ExpectedSymbol + "\0");
        int at = IndexOf(bytes, name);
        Assert.IsGreaterThanOrEqualTo(0, at);
        bytes[at + name.Length - 2] = (byte)'X';
        File.WriteAllBytes(copy, bytes);

        var e = Assert.ThrowsExactly<InvalidDataException>(() => ElfVersionNeed.Weaken(copy));
        StringAssert.Contains(e.Message, "not be safe");
    }

    [TestMethod]
    public void BuildOutput_LibraryIsWeakenedUnlessTheSystemHasTheVersion()
    {
        string built = Path.Combine(AppContext.BaseDirectory, "runtimes", "linux-x64", "native", "libLibTorchSharp.so");
        Assert.IsTrue(File.Exists(built), built);
        Assert.AreEqual(!ElfVersionNeed.SystemProvides(), ElfVersionNeed.IsWeak(built));
    }

    private static int IndexOf(byte[] hay, byte[] needle)
    {
        for (int i = 0; i <= hay.Length - needle.Length; i++)
            if (hay.AsSpan(i, needle.Length).SequenceEqual(needle)) return i;
        return -1;
    }
}
