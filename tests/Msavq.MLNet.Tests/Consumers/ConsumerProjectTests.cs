using System.Text.RegularExpressions;
using Msavq.Build;

namespace Msavq.MLNet.Tests.Consumers;

/// <summary>
/// The library in other people's projects (issues 18.6, 19.8, 19.9, 19.1): a console app outside the repository that
/// references our NuGet packages, or our projects, builds and runs on this machine's Debian 12 — whose libstdc++
/// lacks the GLIBCXX_3.4.32 that TorchSharp 0.107 asks for — with NUGET_PACKAGES set without a trailing slash.
/// </summary>
[TestClass]
public sealed class ConsumerProjectTests
{
    private static readonly TimeSpan Minutes20 = TimeSpan.FromMinutes(20);

    /// <summary>The first C# block of README.md, exactly as printed.</summary>
    internal static string ReadmeSnippet()
    {
        string readme = File.ReadAllText(Path.Combine(ExternalProject.RepoRoot, "README.md"));
        var m = Regex.Match(readme, "```csharp\n(.*?)```", RegexOptions.Singleline);
        Assert.IsTrue(m.Success, "README.md has a ```csharp block");
        return m.Groups[1].Value;
    }

    [TestMethod]
    public void ReadmeSnippet_BuildsAndRuns_InAProjectThatReferencesThePackages()
    {
        string version = $"0.0.1-consumer.{DateTime.UtcNow:yyyyMMddHHmmss}";
        using var feed = new ExternalProject("feed");
        using var app = new ExternalProject("consumer");
        try
        {
            // dotnet pack gives the three packages; the repo's projects are already built in this configuration.
            foreach (var project in new[] { "Transforms", "Estimators", "Models" })
                ExternalProject.Run("dotnet", ExternalProject.RepoRoot, Minutes20, "pack", $"src/{project}/Msavq.MLNet.{project}.csproj",
                    "--no-build", "-c", ExternalProject.Configuration, "-o", feed.Directory, $"-p:Version={version}");
            app.Write("nuget.config", $"""
                <?xml version="1.0" encoding="utf-8"?>
                <configuration>
                  <packageSources>
                    <add key="msavq-local" value="{feed.Directory}" />
                  </packageSources>
                </configuration>
                """);
            app.Write("Consumer.csproj", $"""
                <Project Sdk="Microsoft.NET.Sdk">
                  <PropertyGroup>
                    <OutputType>Exe</OutputType>
                    <TargetFramework>net10.0</TargetFramework>
                    <ImplicitUsings>enable</ImplicitUsings>
                    <Nullable>enable</Nullable>
                  </PropertyGroup>
                  <ItemGroup>
                    <PackageReference Include="Msavq.MLNet.Estimators" Version="{version}" />
                    <PackageReference Include="Msavq.MLNet.Models" Version="{version}" />
                  </ItemGroup>
                </Project>
                """);
            app.Write("Program.cs", ReadmeSnippet());
            string output = app.Dotnet(Minutes20, "run");
            StringAssert.Contains(output, "bits/weight");
            StringAssert.Contains(output, "accuracy");

            // The package's buildTransitive step patched the consumer's own copy of the native library at build time.
            string so = Path.Combine(app.Directory, "bin", "Debug", "net10.0", "runtimes", "linux-x64", "native", "libLibTorchSharp.so");
            Assert.IsTrue(File.Exists(so), so);
            Assert.AreEqual(!ElfVersionNeed.SystemProvides(), ElfVersionNeed.IsWeak(so));
        }
        finally
        {
            foreach (var id in new[] { "msavq.mlnet.transforms", "msavq.mlnet.estimators", "msavq.mlnet.models" })
            {
                string cached = Path.Combine(ExternalProject.PackagesWithoutTrailingSlash, id, version);
                if (Directory.Exists(cached)) Directory.Delete(cached, recursive: true);
            }
        }
    }

    [TestMethod]
    public void ProjectReference_FromOutsideTheRepo_LoadsTorchSharpAndAnswers()
    {
        using var app = new ExternalProject("projref");
        app.Write("Consumer.csproj", $"""
            <Project Sdk="Microsoft.NET.Sdk">
              <PropertyGroup>
                <OutputType>Exe</OutputType>
                <TargetFramework>net10.0</TargetFramework>
                <ImplicitUsings>enable</ImplicitUsings>
              </PropertyGroup>
              <ItemGroup>
                <ProjectReference Include="{ExternalProject.RepoRoot}/src/Models/Msavq.MLNet.Models.csproj" />
              </ItemGroup>
            </Project>
            """);
        app.Write("Program.cs", """
            using Msavq.MLNet.Data;
            using Msavq.MLNet.Models;

            using var vlm = ShapesVlm.LoadPretrained();
            var rows = new ShapesVqaGenerator(ShapesVqa.SeedOf(ShapesVqaSplit.Test)).Take(4).Select(e => new ModelRow(e.Image, e.Question)).ToList();
            using var batch = vlm.Encode(rows);
            Console.WriteLine("answers: " + string.Join(", ", vlm.Predict(batch).Answers));
            """);
        app.Dotnet(Minutes20, "build", "-c", ExternalProject.Configuration);
        string so = Path.Combine(app.Directory, "bin", ExternalProject.Configuration, "net10.0", "runtimes", "linux-x64", "native", "libLibTorchSharp.so");
        Assert.IsTrue(File.Exists(so), so);
        // No build step of ours ran for this project: its copy is as TorchSharp ships it, and the library fixes it when it loads.
        if (!ElfVersionNeed.SystemProvides()) Assert.IsFalse(ElfVersionNeed.IsWeak(so), "the build left the copy alone");
        string output = app.Dotnet(Minutes20, "run", "--no-build", "-c", ExternalProject.Configuration);
        StringAssert.Contains(output, "answers: ");
        Assert.AreEqual(!ElfVersionNeed.SystemProvides(), ElfVersionNeed.IsWeak(so));
    }

    /// <summary>Issue 19.1: no project joins $(NuGetPackageRoot) and a path without making sure of the separator.</summary>
    [TestMethod]
    public void BuildFiles_JoinNuGetPackageRoot_WithATrailingSlash()
    {
        var offenders = Directory.EnumerateFiles(ExternalProject.RepoRoot, "*.*", SearchOption.AllDirectories)
            .Where(f => f.EndsWith(".csproj") || f.EndsWith(".props") || f.EndsWith(".targets"))
            .Where(f => !f.Contains("/bin/") && !f.Contains("/obj/"))
            .SelectMany(f => File.ReadAllLines(f).Select((line, i) => (f, i, line)))
            .Where(x => x.line.Contains("$(NuGetPackageRoot)") && !x.line.Contains("EnsureTrailingSlash('$(NuGetPackageRoot)')"))
            .Select(x => $"{x.f}:{x.i + 1}").ToList();
        Assert.IsEmpty(offenders, string.Join("\n", offenders));
    }
}
