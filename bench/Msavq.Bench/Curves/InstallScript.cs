using System.Diagnostics;

namespace Msavq.Bench.Curves;

/// <summary>Data the bench installs from Debian packages, never committed: a script under scripts/ in the output, run when the data is missing.</summary>
internal static class InstallScript
{
    /// <summary>Runs scripts/<paramref name="name"/> unless <paramref name="installed"/> already holds, and checks it does afterwards.</summary>
    public static void Ensure(string name, Func<bool> installed, string what)
    {
        if (installed()) return;
        string script = Path.Combine(AppContext.BaseDirectory, "scripts", name);
        Console.Error.WriteLine($"{what} is missing: running {script}");
        using var p = Process.Start(new ProcessStartInfo("bash", script) { UseShellExecute = false })
                      ?? throw new InvalidOperationException($"Could not start {script}.");
        p.WaitForExit();
        if (p.ExitCode != 0 || !installed())
            throw new InvalidOperationException($"{script} did not install {what} (exit code {p.ExitCode}).");
    }
}
