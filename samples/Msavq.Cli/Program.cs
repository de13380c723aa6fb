using Msavq.Cli.Commands;
using Spectre.Console;
using Spectre.Console.Cli;

namespace Msavq.Cli;

public static class Program
{
    public static int Main(string[] args)
    {
        // Process-wide allocator setting for long quantizations (an opt-in of this program, never of the library).
        Msavq.MLNet.GlibcAllocator.Configure();
        // First Ctrl+C: commands stop at their next safe point (all files are written atomically) and exit 130;
        // a second one ends the process at once.
        using var stop = new CancellationTokenSource();
        Console.CancelKeyPress += (_, e) =>
        {
            if (stop.IsCancellationRequested) return;
            e.Cancel = true;
            stop.Cancel();
        };
        return Run(args, cancellation: stop.Token);
    }

    /// <summary>Runs the command line in-process (tests call this).</summary>
    public static int Run(string[] args, IAnsiConsole? console = null, CancellationToken cancellation = default)
    {
        var app = new CommandApp();
        app.Configure(c =>
        {
            c.SetApplicationName("msavq");
            c.UseStrictParsing();   // an unknown option or a typo is an error, never a silent default run
            if (console != null) c.ConfigureConsole(console);
            c.AddCommand<TrainCommand>("train")
                .WithDescription("Train the reference ShapesVlm from scratch on Shapes-VQA (resumable).")
                .WithExample("train", "--minutes", "90", "--out", "runs/train")
                .WithExample("train", "--steps", "7200", "--out", "runs/train");
            c.AddCommand<EvalCommand>("eval")
                .WithDescription("Accuracy per question family on the Shapes-VQA test split (default: the shipped model).")
                .WithExample("eval", "--questions", "2000");
            c.AddCommand<QuantizeCommand>("quantize")
                .WithDescription("Quantize the model (default: the shipped ShapesVlm), print a before/after table, save the pipeline.")
                .WithExample("quantize", "--method", "msavq", "--budget", "2.25", "--out", "runs/shapes-vlm.zip")
                .WithExample("quantize", "--onnx", "resnet18.onnx", "--data", "images/", "--channels", "bgr", "--mean", "103.06,115.90,123.15",
                             "--method", "gptq", "--budget", "4.25", "--out", "runs/resnet18-q.onnx");
            c.AddCommand<PredictCommand>("predict")
                .WithDescription("Answer test questions with a saved pipeline (from 'msavq quantize') or a .msavq file and its base model.")
                .WithExample("predict", "--pipeline", "runs/shapes-vlm.zip", "--questions", "10");
            c.AddCommand<ReportCommand>("report")
                .WithDescription("Quantize with each method at each budget, evaluate on test questions; write CSV, PNG plots and index.html to a folder, rewritten after every run.")
                .WithExample("report", "--out", "report", "--budgets", "2.25,3", "--methods", "gptq,msavq");
            c.AddCommand<QuantizeLayerCommand>("quantize-layer")
                .WithDescription("Quantize one layer from NumPy files (W, H, optional G and b) and report bits and proxy error.")
                .WithExample("quantize-layer", "--weight", "W.npy", "--hessian", "H.npy", "--method", "gptq", "--bits", "2", "--out", "Q.npy");
            c.SetExceptionHandler((ex, _) => CliErrors.Report(ex, console ?? AnsiConsole.Console, args));
        });
        return app.Run(args, cancellation);
    }
}
