using Msavq.Bench.Commands;
using Msavq.MLNet;
using Spectre.Console;
using Spectre.Console.Cli;

namespace Msavq.Bench;

/// <summary>
/// <c>msavq-bench</c>: every benchmark behind bench/RESULTS.md, each a command that names its settings in the section
/// it writes. Quality curves (curves) and engine/kernels timings; run one at a time, alone on the machine.
/// </summary>
public static class Program
{
    public static int Main(string[] args)
    {
        // Process-wide allocator setting for long quantizations (an opt-in of the programs, never of the library).
        // Ctrl+C ends the process: every file a benchmark writes is written whole or not at all (AtomicFile).
        GlibcAllocator.Configure();
        return Run(args);
    }

    public static int Run(string[] args, IAnsiConsole? console = null, CancellationToken cancellation = default)
    {
        var app = new CommandApp();
        app.Configure(c =>
        {
            c.SetApplicationName("msavq-bench");
            c.UseStrictParsing();
            if (console != null) c.ConfigureConsole(console);
            c.AddCommand<CurvesCommand>("curves")
                .WithDescription("Quality against all-in bits/weight for every method, over calibration draws, with bootstrap intervals; --tune on validation.")
                .WithExample("curves", "--model", "shapes-vlm", "--seeds", "3");
            c.AddCommand<OnnxCommand>("onnx")
                .WithDescription("The ONNX models' curves (PP-OCRv4, ResNet18) at 2, 2.25 and 3 b/w, every method tuned; their RESULTS sections.");
            c.AddCommand<ProxyCommand>("proxy")
                .WithDescription("Every method on one synthetic layer at one budget: bits, proxy error, loss model, time.");
            c.AddCommand<QuantizeTimeCommand>("quantize-time")
                .WithDescription("Seconds and peak memory to quantize one synthetic layer with one method (one method per process).")
                .WithExample("quantize-time", "--method", "gptq", "--size", "4096");
            c.AddCommand<ExportLayerCommand>("export-layer")
                .WithDescription("W.npy and H.npy of the synthetic layer, for the published GPTQ reference and 'msavq quantize-layer'.");
            c.AddCommand<AnswersCommand>("answers")
                .WithDescription("ShapesVlm answers per second: FP32 against the 2-bit model on decoded weights and on QuantizedLinear.");
            c.AddCommand<KernelsCommand>("kernels")
                .WithDescription("BenchmarkDotNet: 4096² layer, fp32 linear vs C# GEMV vs 2-bit look-ups, hot and cold; read bandwidth.");
            c.SetExceptionHandler((ex, _) =>
            {
                var c = console ?? AnsiConsole.Console;
                c.MarkupLine($"[red]error:[/] {Markup.Escape((ex.InnerException ?? ex).Message)}");
                if (Environment.GetEnvironmentVariable("MSAVQ_BENCH_TRACE") is not null) c.WriteLine(ex.ToString());
                return ex is OperationCanceledException ? 130 : 1;
            });
        });
        return app.Run(args, cancellation);
    }
}
