using System.Diagnostics;
using Microsoft.ML;
using Msavq.MLNet;
using Msavq.MLNet.Data;
using Msavq.MLNet.Kernels;
using Msavq.MLNet.Models;
using static TorchSharp.torch;

namespace Msavq.Bench;

/// <summary>
/// <c>msavq-bench answers</c>: ShapesVlm answers per second on test questions, full precision against the 2-bit
/// model (MSAVQ, 2.0 bits all-in, the README chain) run three ways — decoded fp32 weights in the Linears, QuantizedLinear
/// with its default split (≤ 8 rows per call on the look-up kernel, more on decoded slabs), and QuantizedLinear with
/// every call on the look-up kernel. Each question is one forward pass over its image and question tokens.
/// </summary>
public static class AnswerThroughput
{
    public static int Run(int questions, int calibration, int batch)
    {
        set_num_threads(Environment.ProcessorCount);
        var ml = new MLContext(0);
        var fp = ShapesVlm.LoadPretrained();
        Console.WriteLine($"Quantizing ShapesVlm (MSAVQ, ≤ 2.0 bits, {calibration} calibration rows)...");
        var chain = ml.Msavq()
            .CollectCalibration(fp, imageColumn: "Image", textColumn: "Question", answerColumn: "Answer")
            .Append(ml.Msavq().EstimateSensitivity(targetBitsPerWeight: 2.0, vectorDimension: 2))
            .Append(ml.Msavq().QuantizeMixedPrecisionVq())
            .Fit(ShapesVqa.Generate(ml, ShapesVqaSplit.Train, calibration));
        var q = chain.LastTransformer;
        var decoded = (ShapesVlm)q.Model;
        var lookups = decoded.Clone();
        int swapped = lookups.UseLookupKernels(q.Quantized);
        var allLookups = decoded.Clone();
        allLookups.UseLookupKernels(q.Quantized, smallBatchRows: int.MaxValue);

        var rows = new ShapesVqaGenerator(ShapesVqa.SeedOf(ShapesVqaSplit.Test)).Take(questions)
            .Select(e => new ModelRow(e.Image, e.Question)).ToList();
        Console.WriteLine($"{questions} test questions, batch {batch}, {Environment.ProcessorCount} threads; " +
                          $"{swapped} of {q.Quantized.Layers.Count} quantized layers on QuantizedLinear, {q.BitsPerWeight:F3} bits/weight all-in");
        var models = new (string Name, ShapesVlm Model)[]
        {
            ("FP32", fp), ("2-bit, decoded fp32 Linears", decoded),
            ("2-bit, QuantizedLinear (≤ 8 rows per call on look-ups, more on decoded slabs)", lookups),
            ("2-bit, QuantizedLinear (every call on look-ups)", allLookups),
        };
        // Rounds alternate between the models so a busy moment of the machine hits them all; best round reported.
        var rates = new double[models.Length];
        var answers = new string[models.Length][];
        for (int round = 0; round < Rounds; round++)
            for (int m = 0; m < models.Length; m++)
            {
                var (rate, a) = Measure(models[m].Model, rows, batch);
                rates[m] = Math.Max(rates[m], rate);
                answers[m] = a;
            }
        Console.WriteLine("| model | answers/s | vs FP32 | answers equal to FP32 |");
        Console.WriteLine("|---|---:|---:|---:|");
        for (int m = 0; m < models.Length; m++)
        {
            int same = answers[m].Zip(answers[0]).Count(p => p.First == p.Second);
            Console.WriteLine($"| {models[m].Name} | {rates[m]:F1} | {rates[m] / rates[0]:F2}× | {same}/{answers[m].Length} |");
        }
        return 0;
    }

    private const int Rounds = 3;

    private static (double Rate, string[] Answers) Measure(ShapesVlm model, IReadOnlyList<ModelRow> rows, int batch)
    {
        using var _ = no_grad();
        Answer(model, rows.Take(Math.Min(batch * 2, rows.Count)).ToList(), batch); // warm-up
        var watch = Stopwatch.StartNew();
        var answers = Answer(model, rows, batch);
        return (rows.Count / watch.Elapsed.TotalSeconds, answers);
    }

    private static string[] Answer(ShapesVlm model, IReadOnlyList<ModelRow> rows, int batch)
    {
        var answers = new List<string>();
        for (int i = 0; i < rows.Count; i += batch)
        {
            using var scope = NewDisposeScope();
            using var b = model.Encode(rows.Skip(i).Take(batch).ToList());
            answers.AddRange(model.Predict(b).Answers);
        }
        return answers.ToArray();
    }
}
