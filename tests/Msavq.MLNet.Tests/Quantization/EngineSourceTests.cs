using System.Text.RegularExpressions;
using Msavq.MLNet.Tests.Consumers;

namespace Msavq.MLNet.Tests.Quantization;

/// <summary>
/// Rules on the quantization engine's source (issues 16.4, 16.5), for the files that make it up: the methods, the
/// statistics, the planner, fine-tuning and the layer dispatcher. The runtime checks are FinalizerRaceTests and
/// DeviceTests; these point at the line.
/// </summary>
[TestClass]
public sealed class EngineSourceTests
{
    private static readonly string[] Folders = { "Quantization", "Sensitivity", "Calibration", "FineTuning" };

    internal static IEnumerable<(string File, string[] Lines)> EngineFiles()
    {
        string estimators = Path.Combine(ExternalProject.RepoRoot, "src", "Estimators");
        var files = Folders.SelectMany(f => Directory.EnumerateFiles(Path.Combine(estimators, f), "*.cs"))
            .Append(Path.Combine(estimators, "LayerQuantizer.cs")).OrderBy(f => f, StringComparer.Ordinal).ToList();
        Assert.IsGreaterThan(25, files.Count, "the engine's files were found");
        return files.Select(f => (Path.GetRelativePath(ExternalProject.RepoRoot, f), File.ReadAllLines(f)));
    }

    /// <summary>The code of a line without its comment (the engine has no "//" inside strings).</summary>
    internal static string Code(string line) => line.IndexOf("//", StringComparison.Ordinal) is var at and >= 0 ? line[..at] : line;

    /// <summary>
    /// A number literal where TorchSharp takes a Scalar makes an implicit one, left to the finalizer: the first argument
    /// of the Scalar-taking methods, <c>full_like</c>'s value, <c>index_add_</c>'s alpha; and <c>arange</c> makes them
    /// for its bounds whatever it is given. (Operators with a number, <c>t * 2</c>, and <c>a + b</c>'s alpha cannot be
    /// told from C# arithmetic here: FinalizerRaceTests counts those at run time.)
    /// </summary>
    [TestMethod]
    public void NoNumberLiteral_WhereTorchSharpTakesAScalar()
    {
        var rules = new (string Why, Regex Pattern)[]
        {
            ("Scalar argument", new(@"\.(pow|clamp_min|clamp_max|clamp_|clamp|eq|ne|gt|lt|ge|le|mul_?|div_?|add_?|sub_?|fill_)\(\s*\(?-?\d")),
            ("full_like value", new(@"\bfull_like\([^,]+,\s*\(?-?\d")),
            ("index_add_ alpha", new(@"\bindex_add_\(.*,\s*-?\d[\d.]*\s*\)")),
            ("index_fill_ value", new(@"\bindex_fill_\(.*,\s*-?\d[\d.]*\s*\)")),
            ("arange (implicit bounds)", new(@"\barange\(")),
        };
        var found = EngineFiles().SelectMany(f => f.Lines.Select((l, i) => (f.File, Line: i + 1, Code: Code(l))))
            .SelectMany(l => rules.Where(r => r.Pattern.IsMatch(l.Code)).Select(r => $"{l.File}:{l.Line} {r.Why}: {l.Code.Trim()}"))
            .ToList();
        Assert.IsEmpty(found, "implicit Scalars:\n" + string.Join("\n", found));
    }

    /// <summary>
    /// Every tensor the engine creates from nothing names a device (the one of the tensor it works with), so the engine
    /// runs where its inputs are. A call that must stay on the CPU says why in a "// cpu:" comment on its first line.
    /// And <c>data&lt;T&gt;()</c>, which reads host memory, only after <c>cpu()</c>.
    /// </summary>
    [TestMethod]
    public void EveryFactory_NamesADevice_AndHostReadsGoThroughCpu()
    {
        var factory = new Regex(@"(?:(?<![\w.])|(?<=\btorch\.))(zeros|ones|empty|eye|arange|full|tensor|rand|randn|randint|randperm|linspace)\(");
        var found = new List<string>();
        int calls = 0;
        foreach (var (file, lines) in EngineFiles())
        {
            string code = string.Join("\n", lines.Select(Code));
            foreach (Match m in factory.Matches(code))
            {
                int end = m.Index + m.Length, depth = 1;
                while (depth > 0 && end < code.Length) depth += code[end++] switch { '(' => 1, ')' => -1, _ => 0 };
                string args = code[(m.Index + m.Length)..(end - 1)];
                int line = code[..m.Index].Count(ch => ch == '\n');
                calls++;
                if (!args.Contains("device", StringComparison.OrdinalIgnoreCase) && !lines[line].Contains("// cpu:", StringComparison.Ordinal))
                    found.Add($"{file}:{line + 1} {m.Groups[1].Value}({Regex.Replace(args, @"\s+", " ")}) names no device");
            }
            found.AddRange(lines.Select((l, i) => (Code: Code(l), Line: i + 1))
                .Where(l => l.Code.Contains(".data<", StringComparison.Ordinal) && !l.Code.Contains(".cpu().data<", StringComparison.Ordinal))
                .Select(l => $"{file}:{l.Line} data<T>() on a tensor that may not be on the CPU: {l.Code.Trim()}"));
        }
        Assert.IsGreaterThan(40, calls, "the factory calls were found");
        Assert.IsEmpty(found, string.Join("\n", found));
    }
}
