using System.Diagnostics;
using System.Text;

namespace Msavq.MLNet.Tests.Consumers;

/// <summary>
/// A throwaway .NET project outside the repository (in the temp folder, so none of the repo's Directory.Build.*
/// files apply to it), built and run with the real SDK as a user would.
/// </summary>
internal sealed class ExternalProject : IDisposable
{
    public ExternalProject(string name)
    {
        Directory = Path.Combine(Path.GetTempPath(), $"msavq-{name}-{Guid.NewGuid():N}");
        System.IO.Directory.CreateDirectory(Directory);
    }

    public string Directory { get; }

    /// <summary>The repository root (where Msavq.MLNet.sln is).</summary>
    public static string RepoRoot
    {
        get
        {
            for (var d = new DirectoryInfo(AppContext.BaseDirectory); d is not null; d = d.Parent)
                if (File.Exists(Path.Combine(d.FullName, "Msavq.MLNet.sln"))) return d.FullName;
            throw new InvalidOperationException("Msavq.MLNet.sln not found above " + AppContext.BaseDirectory);
        }
    }

    /// <summary>The configuration this test assembly was built in (the repo's projects are built in it too).</summary>
    public static string Configuration =>
#if DEBUG
        "Debug";
#else
        "Release";
#endif

    /// <summary>The global packages folder, written as CI caches and containers often set it: without a trailing slash.</summary>
    public static string PackagesWithoutTrailingSlash =>
        (Environment.GetEnvironmentVariable("NUGET_PACKAGES")
         ?? Path.Combine(Environment.GetFolderPath(Environment.SpecialFolder.UserProfile), ".nuget", "packages"))
        .TrimEnd('/', '\\');

    public void Write(string file, string content) => File.WriteAllText(Path.Combine(Directory, file), content);

    /// <summary>Runs <c>dotnet ARGS</c> in the project folder; throws with the whole output when it fails.</summary>
    public string Dotnet(TimeSpan timeout, params string[] args) => Run("dotnet", Directory, timeout, args);

    public static string Run(string program, string workingDirectory, TimeSpan timeout, params string[] args)
    {
        var psi = new ProcessStartInfo(program)
        {
            WorkingDirectory = workingDirectory, RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false,
        };
        foreach (var a in args) psi.ArgumentList.Add(a);
        psi.Environment["NUGET_PACKAGES"] = PackagesWithoutTrailingSlash;
        psi.Environment["DOTNET_CLI_TELEMETRY_OPTOUT"] = "1";
        psi.Environment["DOTNET_NOLOGO"] = "1";
        // The test host's own MSBuild settings must not leak into the child build.
        foreach (var key in new[] { "MSBuildSDKsPath", "MSBUILD_EXE_PATH", "MSBuildExtensionsPath", "DOTNET_HOST_PATH" }) psi.Environment.Remove(key);
        var output = new StringBuilder();
        using var p = new Process { StartInfo = psi };
        p.OutputDataReceived += (_, e) => { if (e.Data is not null) lock (output) output.AppendLine(e.Data); };
        p.ErrorDataReceived += (_, e) => { if (e.Data is not null) lock (output) output.AppendLine(e.Data); };
        p.Start();
        p.BeginOutputReadLine();
        p.BeginErrorReadLine();
        if (!p.WaitForExit(timeout))
        {
            p.Kill(entireProcessTree: true);
            throw new TimeoutException($"{program} {string.Join(' ', args)} did not finish in {timeout}:\n{output}");
        }
        p.WaitForExit();
        if (p.ExitCode != 0) throw new InvalidOperationException($"{program} {string.Join(' ', args)} exited with {p.ExitCode}:\n{output}");
        return output.ToString();
    }

    public void Dispose()
    {
        try { System.IO.Directory.Delete(Directory, recursive: true); } catch (IOException) { }
    }
}
