// Marks the GLIBCXX_3.4.32 version need of libLibTorchSharp.so as weak, so TorchSharp 0.107 loads on
// Debian 12 (whose libstdc++ stops at GLIBCXX_3.4.30). See architecture.md §7.
//
// Why this is safe: the only symbol bound to that version is std::ios_base_library_init, which no relocation
// uses. With VER_FLG_WEAK set on its Vernaux entry, the dynamic loader no longer rejects the library when the
// version is missing. The check below refuses to patch if any other symbol needs the version.
//
// Written for netstandard2.0 (what RoslynCodeTaskFactory compiles against).
// This file is compiled three times: by MSBuild's RoslynCodeTaskFactory (build/TorchSharpNative.targets, in this repo
// and, packed as buildTransitive, in every project that references our packages), and with MSAVQ_ELF_ONLY (leaving
// out the MSBuild task class) into the runtime assembly, which applies it at load time for consumers that reference
// our projects rather than our packages, and into the test project, which checks the ELF logic on copies of the
// real library.
#nullable enable
using System;
using System.Collections.Generic;
using System.IO;
using System.Text;
#if !MSAVQ_ELF_ONLY
using Microsoft.Build.Framework;
using Microsoft.Build.Utilities;
#endif

namespace Msavq.Build
{
    internal enum ElfPatchResult { Patched, AlreadyWeak, NoSuchVersionNeed }

    /// <summary>Minimal ELF64 little-endian reader/writer for the one edit we need.</summary>
    internal static class ElfVersionNeed
    {
        public const string Version = "GLIBCXX_3.4.32";
        public const string ExpectedSymbol = "_ZSt21ios_base_library_initv";
        const uint ShtDynsym = 11, ShtGnuVerneed = 0x6ffffffe, ShtGnuVersym = 0x6fffffff;
        const ushort VerFlgWeak = 0x2;

        /// <summary>Sets VER_FLG_WEAK on the <paramref name="version"/> entry of .gnu.version_r, atomically.</summary>
        /// <exception cref="InvalidDataException">The file is not a 64-bit little-endian ELF of the expected shape.</exception>
        public static ElfPatchResult Weaken(string path, string version = Version, string expectedSymbol = ExpectedSymbol)
        {
            byte[] elf = File.ReadAllBytes(path);
            long flagsOffset = FindVernauxFlags(elf, path, version, expectedSymbol);
            if (flagsOffset < 0) return ElfPatchResult.NoSuchVersionNeed;
            ushort flags = BitConverter.ToUInt16(elf, (int)flagsOffset);
            if ((flags & VerFlgWeak) != 0) return ElfPatchResult.AlreadyWeak;
            flags |= VerFlgWeak;
            elf[flagsOffset] = (byte)flags;
            elf[flagsOffset + 1] = (byte)(flags >> 8);

            // Keep the original timestamp: the SDK's incremental copy (same size, same time) then leaves the
            // patched file alone instead of copying the pristine one over it on every build.
            DateTime stamp = File.GetLastWriteTimeUtc(path);
            string tmp = path + ".weak.tmp";
            using (var fs = new FileStream(tmp, FileMode.Create, FileAccess.Write))
            {
                fs.Write(elf, 0, elf.Length);
                fs.Flush(true);
            }
            File.SetLastWriteTimeUtc(tmp, stamp);
            File.Replace(tmp, path, null); // rename(2) on Unix: readers see the old or the new file
            return ElfPatchResult.Patched;
        }

        /// <summary>True when the version need of <paramref name="version"/> is present and already weak.</summary>
        public static bool IsWeak(string path, string version = Version)
        {
            byte[] elf = File.ReadAllBytes(path);
            long at = FindVernauxFlags(elf, path, version, null);
            return at >= 0 && (BitConverter.ToUInt16(elf, (int)at) & VerFlgWeak) != 0;
        }

        /// <summary>Whether a system libstdc++ already defines the version (then nothing needs patching).</summary>
        public static bool SystemProvides(string version = Version)
        {
            string[] candidates =
            {
                "/usr/lib/x86_64-linux-gnu/libstdc++.so.6", "/usr/lib/aarch64-linux-gnu/libstdc++.so.6",
                "/usr/lib64/libstdc++.so.6", "/usr/lib/libstdc++.so.6", "/lib/x86_64-linux-gnu/libstdc++.so.6",
            };
            byte[] needle = Encoding.ASCII.GetBytes(version + "\0");
            foreach (string c in candidates)
            {
                if (!File.Exists(c)) continue;
                if (IndexOf(File.ReadAllBytes(c), needle) >= 0) return true;
                return false; // the first libstdc++ found is the one the loader uses
            }
            return false;
        }

        static int IndexOf(byte[] hay, byte[] needle)
        {
            for (int i = 0; i <= hay.Length - needle.Length; i++)
            {
                int j = 0;
                while (j < needle.Length && hay[i + j] == needle[j]) j++;
                if (j == needle.Length) return i;
            }
            return -1;
        }

        /// <returns>File offset of vna_flags of the matching Vernaux entry, or -1 when the file has none.</returns>
        static long FindVernauxFlags(byte[] b, string path, string version, string? expectedSymbol)
        {
            if (b.Length < 64 || b[0] != 0x7F || b[1] != (byte)'E' || b[2] != (byte)'L' || b[3] != (byte)'F')
                throw Bad(path, "not an ELF file (bad magic)");
            if (b[4] != 2) throw Bad(path, "not a 64-bit ELF (EI_CLASS != ELFCLASS64)");
            if (b[5] != 1) throw Bad(path, "not a little-endian ELF (EI_DATA != ELFDATA2LSB)");

            long shoff = (long)U64(b, 0x28, path);
            int shentsize = U16(b, 0x3A, path), shnum = U16(b, 0x3C, path);
            if (shentsize != 64) throw Bad(path, $"unexpected section header size {shentsize}");
            if (shoff <= 0 || shoff + (long)shnum * 64 > b.Length) throw Bad(path, "section headers lie outside the file");

            var sections = new List<(uint Type, long Offset, long Size, uint Link, uint Info, long EntSize)>();
            for (int i = 0; i < shnum; i++)
            {
                long h = shoff + i * 64L;
                var s = (U32(b, h + 4, path), (long)U64(b, h + 0x18, path), (long)U64(b, h + 0x20, path),
                         U32(b, h + 0x28, path), U32(b, h + 0x2C, path), (long)U64(b, h + 0x38, path));
                sections.Add(s);
            }
            int verneedIndex = sections.FindIndex(s => s.Type == ShtGnuVerneed);
            if (verneedIndex < 0) throw Bad(path, "no .gnu.version_r section (SHT_GNU_verneed)");
            var vn = sections[verneedIndex];
            if (vn.Link >= sections.Count) throw Bad(path, ".gnu.version_r links to a missing string table");
            var strtab = sections[(int)vn.Link];
            CheckRange(b, path, vn.Offset, vn.Size);
            CheckRange(b, path, strtab.Offset, strtab.Size);

            long flagsAt = -1; int versionIndex = -1;
            long need = vn.Offset;
            for (uint n = 0; n < vn.Info; n++)
            {
                if (need + 16 > vn.Offset + vn.Size) throw Bad(path, "Verneed entry out of bounds");
                ushort cnt = U16(b, need + 2, path);
                long aux = need + U32(b, need + 8, path);
                for (int a = 0; a < cnt; a++)
                {
                    if (aux + 16 > vn.Offset + vn.Size) throw Bad(path, "Vernaux entry out of bounds");
                    string name = CString(b, path, strtab, U32(b, aux + 8, path));
                    if (name == version) { flagsAt = aux + 4; versionIndex = U16(b, aux + 6, path) & 0x7fff; }
                    uint next = U32(b, aux + 12, path);
                    if (next == 0) break;
                    aux += next;
                }
                uint nextNeed = U32(b, need + 12, path);
                if (nextNeed == 0) break;
                need += nextNeed;
            }
            if (flagsAt < 0 || expectedSymbol == null) return flagsAt;

            // Refuse to weaken a version that a symbol other than the expected one depends on.
            int versymIndex = sections.FindIndex(s => s.Type == ShtGnuVersym);
            int dynsymIndex = sections.FindIndex(s => s.Type == ShtDynsym);
            if (versymIndex < 0 || dynsymIndex < 0) throw Bad(path, "no .dynsym/.gnu.version section");
            var versym = sections[versymIndex]; var dynsym = sections[dynsymIndex];
            CheckRange(b, path, versym.Offset, versym.Size); CheckRange(b, path, dynsym.Offset, dynsym.Size);
            if (dynsym.Link >= sections.Count) throw Bad(path, ".dynsym links to a missing string table");
            var dynstr = sections[(int)dynsym.Link];
            long count = dynsym.Size / 24;
            if (versym.Size / 2 != count) throw Bad(path, ".gnu.version and .dynsym disagree on the symbol count");
            var users = new List<string>();
            for (long i = 0; i < count; i++)
                if ((U16(b, versym.Offset + 2 * i, path) & 0x7fff) == versionIndex)
                    users.Add(CString(b, path, dynstr, U32(b, dynsym.Offset + 24 * i, path)));
            if (users.Count != 1 || users[0] != expectedSymbol)
                throw Bad(path, $"{version} is needed by [{string.Join(", ", users)}], expected only {expectedSymbol}; " +
                                "weakening it would not be safe");
            return flagsAt;
        }

        static void CheckRange(byte[] b, string path, long off, long size)
        {
            if (off < 0 || size < 0 || off + size > b.Length) throw Bad(path, "section lies outside the file");
        }

        static string CString(byte[] b, string path, (uint Type, long Offset, long Size, uint Link, uint Info, long EntSize) strtab, uint at)
        {
            long start = strtab.Offset + at, end = start;
            long limit = strtab.Offset + strtab.Size;
            if (start >= limit) throw Bad(path, "string index outside its table");
            while (end < limit && b[end] != 0) end++;
            return Encoding.ASCII.GetString(b, (int)start, (int)(end - start));
        }

        static ushort U16(byte[] b, long at, string path) { Need(b, at, 2, path); return BitConverter.ToUInt16(b, (int)at); }
        static uint U32(byte[] b, long at, string path) { Need(b, at, 4, path); return BitConverter.ToUInt32(b, (int)at); }
        static ulong U64(byte[] b, long at, string path) { Need(b, at, 8, path); return BitConverter.ToUInt64(b, (int)at); }
        static void Need(byte[] b, long at, int n, string path) { if (at < 0 || at + n > b.Length) throw Bad(path, "truncated"); }

        static InvalidDataException Bad(string path, string why) =>
            new InvalidDataException($"Cannot weaken {Version} in '{path}': {why}.");
    }

#if !MSAVQ_ELF_ONLY
    /// <summary>MSBuild task: weakens the GLIBCXX_3.4.32 need of each given libLibTorchSharp.so copy.</summary>
    public class WeakenGlibcxxVersionNeed : Microsoft.Build.Utilities.Task
    {
        [Required] public ITaskItem[] Files { get; set; } = Array.Empty<ITaskItem>();

        /// <summary>Patch even when the system libstdc++ has the version (tests and packaging).</summary>
        public bool Force { get; set; }

        public override bool Execute()
        {
            if (!Force && ElfVersionNeed.SystemProvides())
            {
                Log.LogMessage(MessageImportance.Low, $"System libstdc++ provides {ElfVersionNeed.Version}; nothing to patch.");
                return true;
            }
            foreach (ITaskItem item in Files)
            {
                string path = item.ItemSpec;
                try
                {
                    ElfPatchResult r = ElfVersionNeed.Weaken(path);
                    Log.LogMessage(r == ElfPatchResult.Patched ? MessageImportance.Normal : MessageImportance.Low,
                        $"{path}: {r}");
                }
                catch (InvalidDataException e)
                {
                    Log.LogError(e.Message);
                }
            }
            return !Log.HasLoggedErrors;
        }
    }
#endif
}
