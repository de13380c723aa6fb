using Msavq.Bench;

// msavq-bench: the engine benchmarks. Results and the commands that produced them are in bench/RESULTS.md.
TorchSharp.torch.set_num_threads(Environment.ProcessorCount);
string cmd = args.Length > 0 ? args[0] : "";
int Arg(string name, int fallback) =>
    Array.IndexOf(args, name) is var i and >= 0 && i + 1 < args.Length ? int.Parse(args[i + 1]) : fallback;
switch (cmd)
{
    case "proxy":
        return ProxyTable.Run(Arg("--size", 1024), Arg("--samples", 8192), (ulong)Arg("--seed", 0));
    case "quantize-time":
        return QuantizeTime.Run(args.Length > 1 ? args[1] : "gptq", Arg("--size", 4096), Arg("--samples", 8192));
    case "export-layer":
    {
        // W.npy (float32) and H.npy (float64) of the synthetic layer, for the published GPTQ reference and
        // `msavq quantize-layer`.
        string dir = Array.IndexOf(args, "--out") is var o and >= 0 ? args[o + 1] : ".";
        Directory.CreateDirectory(dir);
        var layer = SyntheticLayer.Create(Arg("--size", 4096), Arg("--size", 4096), Arg("--samples", 8192), (ulong)Arg("--seed", 0));
        Msavq.Cli.IO.NpyFile.Write(Path.Combine(dir, "W.npy"), layer.W.to(TorchSharp.torch.ScalarType.Float32));
        Msavq.Cli.IO.NpyFile.Write(Path.Combine(dir, "H.npy"), layer.A);
        return 0;
    }
    case "answers":
        // ShapesVlm answers/s: FP vs the 2-bit model on decoded weights and on QuantizedLinear.
        return AnswerThroughput.Run(Arg("--questions", 500), Arg("--calibration", 128), Arg("--batch", 1));
    case "kernels":
        // BenchmarkDotNet: 4096² layer, fp32 linear vs C# GEMV vs 2-bit look-ups, hot and cold; read bandwidth.
        return Msavq.Bench.Kernels.KernelBenchmarks.Run(args[1..]);
    default:
        Console.Error.WriteLine("usage: msavq-bench proxy [--size N] [--samples N] [--seed N]\n" +
                                "       msavq-bench quantize-time gptq|gptvq-d2|gptvq-d4|ldlq-shift [--size N]\n" +
                                "       msavq-bench export-layer [--size N] [--samples N] [--seed N] --out DIR\n" +
                                "       msavq-bench answers [--questions N] [--calibration N] [--batch N]\n" +
                                "       msavq-bench kernels [BenchmarkDotNet arguments, e.g. --filter *LinearKernel*]");
        return 2;
}
