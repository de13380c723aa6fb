using System.Reflection;
using System.Xml.Linq;
using Msavq.MLNet.Tests.Consumers;

namespace Msavq.MLNet.Tests.Docs;

/// <summary>The dependency rules of docs/architecture.md, checked on the built assemblies and the project files.</summary>
[TestClass]
public sealed class ArchitectureTests
{
    private static Assembly Runtime => typeof(MixedPrecisionVqTransformer).Assembly;
    private static Assembly Estimators => typeof(MixedPrecisionVqEstimator).Assembly;
    private static Assembly Models => typeof(Msavq.MLNet.Models.ShapesVlm).Assembly;

    private static string[] References(Assembly a) => a.GetReferencedAssemblies().Select(n => n.Name!).ToArray();

    private static bool Platform(string name) =>
        name is "netstandard" or "mscorlib" || name.StartsWith("System", StringComparison.Ordinal) || name.StartsWith("Microsoft.Win32", StringComparison.Ordinal);

    private static IEnumerable<(string Kind, string Include)> ProjectItems(string csproj) =>
        XDocument.Load(Path.Combine(ExternalProject.RepoRoot, csproj)).Descendants()
            .Where(e => e.Name.LocalName is "PackageReference" or "ProjectReference" or "Compile" && e.Attribute("Include") is not null)
            .Select(e => (e.Name.LocalName, e.Attribute("Include")!.Value));

    [TestMethod]
    public void Runtime_ReferencesExactlyWhatScoringNeeds()
    {
        var items = ProjectItems("src/Transforms/Msavq.MLNet.Transforms.csproj").ToList();
        CollectionAssert.AreEquivalent(new[] { "Microsoft.ML", "TorchSharp-cpu", "Microsoft.Data.Analysis" },
            items.Where(i => i.Kind == "PackageReference").Select(i => i.Include).ToArray());
        Assert.IsFalse(items.Any(i => i.Kind == "ProjectReference"), "the runtime references no project");
        var allowed = new[] { "Microsoft.ML.Core", "Microsoft.ML.Data", "Microsoft.ML.DataView", "Microsoft.ML.Transforms", "TorchSharp", "Microsoft.Data.Analysis" };
        var extra = References(Runtime).Where(r => !Platform(r) && !allowed.Contains(r)).ToList();
        Assert.IsEmpty(extra, "the runtime assembly references " + string.Join(", ", extra));
        Assert.IsEmpty(Runtime.GetManifestResourceNames(), "no checkpoint or data inside the runtime");
    }

    [TestMethod]
    public void Estimators_DoNotReferenceTheModels()
    {
        var refs = References(Estimators);
        foreach (var forbidden in new[] { "Msavq.MLNet.Models", "SkiaSharp", "OnnxSharp", "Microsoft.ML.Tokenizers", "Spectre.Console" })
            Assert.DoesNotContain(forbidden, refs);
        Assert.Contains("Msavq.MLNet.Transforms", refs);
    }

    [TestMethod]
    public void Models_DoNotReferenceTheEstimators()
    {
        var refs = References(Models);
        Assert.DoesNotContain("Msavq.MLNet.Estimators", refs);
        Assert.Contains("Msavq.MLNet.Transforms", refs);
    }

    [TestMethod]
    public void Bench_DependsOnSrcOnly_AndTestsCompileNoBenchSource()
    {
        var bench = ProjectItems("bench/Msavq.Bench/Msavq.Bench.csproj").Where(i => i.Kind == "ProjectReference").Select(i => i.Include).ToList();
        Assert.IsNotEmpty(bench);
        Assert.IsTrue(bench.All(p => p.StartsWith("../../src/", StringComparison.Ordinal)), string.Join(", ", bench));
        var compiled = ProjectItems("tests/Msavq.MLNet.Tests/Msavq.MLNet.Tests.csproj").Where(i => i.Kind == "Compile").Select(i => i.Include).ToList();
        Assert.IsFalse(compiled.Any(c => c.Contains("bench/")), string.Join(", ", compiled));
    }
}
