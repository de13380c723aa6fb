using System.Text.RegularExpressions;
using Msavq.MLNet.Tests.Consumers;

namespace Msavq.MLNet.Tests.Docs;

/// <summary>
/// The README's commands, exactly as printed (issue 19.9), and docs that stand alone in a clone (issue 19.10). The C#
/// snippet is built and run outside the repo by <see cref="ConsumerProjectTests"/>.
/// </summary>
[TestClass]
public sealed class ReadmeTests
{
    private static string Root => ExternalProject.RepoRoot;
    private static string Readme => File.ReadAllText(Path.Combine(Root, "README.md"));

    private static IEnumerable<string> DocFiles() =>
        new[] { Path.Combine(Root, "README.md") }.Concat(Directory.EnumerateFiles(Path.Combine(Root, "docs"), "*.md"));

    /// <summary>The command lines of README's "Two commands" block (comments and blank lines dropped).</summary>
    private static string[] TwoCommands()
    {
        var m = Regex.Match(Readme, @"## Two commands.*?```bash\n(.*?)```", RegexOptions.Singleline);
        Assert.IsTrue(m.Success, "README has a 'Two commands' bash block");
        return m.Groups[1].Value.Split('\n').Select(l => l.Trim()).Where(l => l.Length > 0 && !l.StartsWith('#')).ToArray();
    }

    [TestMethod]
    public void CiRunsExactlyTheReadmeTestCommand()
    {
        var commands = TwoCommands();
        Assert.HasCount(2, commands);
        Assert.AreEqual("dotnet test Msavq.MLNet.sln", commands[1]);
        var ci = File.ReadAllLines(Path.Combine(Root, ".ci", "run")).Select(l => l.Trim());
        Assert.Contains(commands[1], ci);
    }

    /// <summary>The main job, run exactly as printed from the repository root: it ends with the before/after table and a pipeline that loads.</summary>
    [TestMethod]
    public void MainJob_RunsAsPrinted()
    {
        string command = TwoCommands()[0];
        var parts = command.Split(' ', StringSplitOptions.RemoveEmptyEntries);
        Assert.AreEqual("dotnet", parts[0]);
        string output = ExternalProject.Run("dotnet", Root, TimeSpan.FromMinutes(30), parts[1..]);
        StringAssert.Contains(output, "bits per weight (all-in)");
        StringAssert.Contains(output, "agreement with FP");
        string zip = Path.Combine(Root, "runs", "shapes-vlm.zip");
        Assert.IsTrue(File.Exists(zip), zip);
        var ml = new Microsoft.ML.MLContext(0);
        using var loaded = MsavqPipeline.Load(ml, zip, out _);
        Assert.IsGreaterThanOrEqualTo(2.0, loaded.LastTransformer.BitsPerWeight);
        Assert.IsLessThanOrEqualTo(2.25 + 1e-9, loaded.LastTransformer.BitsPerWeight);
    }

    /// <summary>Every other msavq / msavq-bench command the README prints names a command and options that exist.</summary>
    [TestMethod]
    public void EveryPrintedCommand_Parses()
    {
        var lines = Regex.Matches(Readme, @"dotnet run --project (\S+) -c Release -- ([^\n#`]*)")
            .Select(m => (Project: m.Groups[1].Value, Args: m.Groups[2].Value.Trim().TrimEnd('\\').Trim())).ToList();
        Assert.IsNotEmpty(lines);
        foreach (var (project, args) in lines)
        {
            Assert.IsTrue(Directory.Exists(Path.Combine(Root, project)), project);
            var argv = args.Split(' ', StringSplitOptions.RemoveEmptyEntries).ToList();
            string command = argv.TakeWhile(a => !a.StartsWith('-')).Aggregate("", (a, b) => a + " " + b).Trim();
            var console = new Spectre.Console.Testing.TestConsole();
            console.Profile.Width = 400;
            int code = project.Contains("Bench")
                ? Msavq.Bench.Program.Run(command.Split(' ').Append("--help").ToArray(), console)
                : Msavq.Cli.Program.Run(command.Split(' ').Append("--help").ToArray(), console);
            Assert.AreEqual(0, code, $"{project} {args}: {console.Output}");
            foreach (var option in argv.Where(a => a.StartsWith("--")))
                StringAssert.Contains(console.Output, option, $"'{project} {args}': {option} is not an option of '{command}'");
        }
    }

    [TestMethod]
    public void Docs_NeverPointOutsideTheRepository()
    {
        foreach (var file in DocFiles())
            Assert.IsFalse(File.ReadAllText(file).Contains("../shared"), $"{file} points at ../shared, which a clone does not have");
    }

    /// <summary>Repo paths written in README and docs (in backticks or as links) exist in the repository.</summary>
    [TestMethod]
    public void Docs_RepoPathsExist()
    {
        var missing = new List<string>();
        foreach (var file in DocFiles())
        {
            string text = File.ReadAllText(file);
            var paths = Regex.Matches(text, @"`((?:src|docs|bench|samples|tests|build)/[^`\s:]*)`").Select(m => m.Groups[1].Value)
                .Concat(Regex.Matches(text, @"\]\(((?!http)[^)#\s]+)\)").Select(m => m.Groups[1].Value))
                .Concat(Regex.Matches(text, @"(?<![\w/.])((?:docs|bench)/[\w./-]+\.(?:md|csv|png))").Select(m => m.Groups[1].Value));
            foreach (var p in paths.Distinct())
            {
                if (p.Contains('*') || p.Contains('{')) continue;
                string relative = p.TrimEnd('.', ',', ';', ')');
                string baseDir = relative.StartsWith("src/") || relative.StartsWith("docs/") || relative.StartsWith("bench/")
                                 || relative.StartsWith("samples/") || relative.StartsWith("tests/") || relative.StartsWith("build/")
                    ? Root : Path.GetDirectoryName(file)!;
                string full = Path.Combine(baseDir, relative);
                if (!File.Exists(full) && !Directory.Exists(full)) missing.Add($"{Path.GetFileName(file)}: {relative}");
            }
        }
        Assert.IsEmpty(missing, string.Join("\n", missing));
    }
}
