using Spectre.Console;
using Spectre.Console.Cli;

namespace Msavq.Cli;

/// <summary>One clear line per user error, a non-zero exit code, and the stack trace only with --verbose.</summary>
public static class CliErrors
{
    public static int Report(Exception ex, IAnsiConsole console, string[] args)
    {
        var root = ex is CommandAppException or CommandRuntimeException ? ex : Unwrap(ex);
        console.MarkupLine($"[red]error:[/] {Markup.Escape(root.Message)}");
        if (args.Contains("--verbose")) console.WriteException(ex);
        return root is OperationCanceledException ? 130 : 1;
    }

    private static Exception Unwrap(Exception ex) =>
        ex is AggregateException { InnerException: { } inner } ? Unwrap(inner)
        : ex is TypeInitializationException { InnerException: { } ti } ? Unwrap(ti) : ex;
}
