using System.Globalization;
using Microsoft.ML;
using Microsoft.ML.Data;
using Msavq.MLNet;
using Msavq.MLNet.Calibration;
using Msavq.MLNet.Models;
using Msavq.MLNet.Models.Onnx;
using Spectre.Console;
using static TorchSharp.torch;

namespace Msavq.Cli.Commands;

/// <summary>
/// <c>msavq quantize --onnx MODEL.onnx --data DATA --out OUT.onnx</c>: a user's own ONNX model through the same chain.
/// DATA is a folder of images (an image featurizer: every file SkiaSharp decodes, in name order) or a text file of
/// lines (a sentence encoder, with <c>--vocab</c>; each line's partner is the next). The first <c>--calibration</c>
/// items calibrate; the next ones (up to 64) are the before/after table's held-out items: cosine of the quantized to
/// the full-precision output vector.
/// </summary>
internal static class OnnxQuantizeJob
{
    private static readonly string[] ImageExtensions = [".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp"];
    private const int HeldOut = 64;

    private sealed class ImageRow
    {
        [VectorType]
        public byte[] Image { get; set; } = [];
    }

    private sealed class TextRow
    {
        public string Text { get; set; } = "";
        public string Next { get; set; } = "";
    }

    public static int Run(IAnsiConsole console, QuantizeCommand.Settings s, CancellationToken cancellation)
    {
        // Everything the user gave is checked before the model loads and minutes of work start.
        string onnx = s.Onnx!;
        if (!File.Exists(onnx)) throw new FileNotFoundException($"--onnx: file not found: {onnx}", onnx);
        if (s.Data is null) throw new ArgumentException("--onnx needs --data: a folder of images or a text file of lines.");
        if (s.Out == QuantizeCommand.DefaultOut || !s.Out.EndsWith(".onnx", StringComparison.OrdinalIgnoreCase))
            throw new ArgumentException("--onnx needs --out OUT.onnx, the quantized ONNX file to write.");
        AtomicFile.EnsureWritable(s.Out, "--out");
        if (s.LayersOut is not null) AtomicFile.EnsureWritable(s.LayersOut, "--layers-out");
        if (s.Report is not null) AtomicFile.EnsureWritable(s.Report, "--report");
        bool images = Directory.Exists(s.Data);
        if (!images && !File.Exists(s.Data)) throw new FileNotFoundException($"--data: no such folder or file: {s.Data}", s.Data);
        if (!images && s.Data.EndsWith(".csv", StringComparison.OrdinalIgnoreCase))
            throw new NotSupportedException("--data: CSV files are not read yet; give a folder of images or a text file of lines.");
        if (!images && s.Vocab is null) throw new ArgumentException("--data is a text file: a text model needs --vocab VOCAB.txt (its WordPiece vocabulary).");
        if (s.Format is not ("dequantized" or "matmulnbits")) throw new ArgumentException($"--format must be dequantized or matmulnbits, not '{s.Format}'.");

        var ml = new MLContext(seed: s.Seed);
        TorchSharp.torch.set_num_threads(s.Threads);
        var layerOptions = new OnnxLayerOptions { NamePattern = s.Layers, MinimumWeights = s.MinWeights };
        using var model = images
            ? OnnxModel.Load(onnx, new OnnxImageOptions
            {
                ChannelOrder = s.Channels.Equals("bgr", StringComparison.OrdinalIgnoreCase) ? ImageChannelOrder.Bgr : ImageChannelOrder.Rgb,
                Scale = s.Scale, Mean = Triple(s.Mean, "--mean"), Std = Triple(s.Std, "--std"),
            }, layerOptions)
            : OnnxModel.Load(onnx, OnnxTextOptions.Bert(s.Vocab!), layerOptions);

        IDataView calibration;
        List<byte[]> heldImages = [];
        List<string> heldTexts = [];
        CalibrationCollector.Options collect;
        if (images)
        {
            var files = Directory.EnumerateFiles(s.Data).Where(f => ImageExtensions.Contains(Path.GetExtension(f).ToLowerInvariant()))
                .Order(StringComparer.Ordinal).ToList();
            if (files.Count == 0) throw new ArgumentException($"--data: {s.Data} holds no image files ({string.Join(", ", ImageExtensions)}).");
            calibration = ml.Data.LoadFromEnumerable(files.Take(s.Calibration).Select(f => new ImageRow { Image = File.ReadAllBytes(f) }).ToList());
            heldImages = files.Skip(s.Calibration).Take(HeldOut).Select(File.ReadAllBytes).ToList();
            collect = new CalibrationCollector.Options { Model = model, ImageColumnName = nameof(ImageRow.Image), TextColumnName = null, AnswerColumnName = null };
        }
        else
        {
            var lines = File.ReadLines(s.Data).Where(l => !string.IsNullOrWhiteSpace(l)).ToList();
            if (lines.Count < 2) throw new ArgumentException($"--data: {s.Data} has {lines.Count} non-empty lines; calibration pairs each line with the next.");
            calibration = ml.Data.LoadFromEnumerable(lines.Take(s.Calibration + 1).Zip(lines.Skip(1).Take(s.Calibration), (a, b) => new TextRow { Text = a, Next = b }).ToList());
            heldTexts = lines.Skip(s.Calibration + 1).Take(HeldOut).ToList();
            collect = new CalibrationCollector.Options { Model = model, ImageColumnName = null, TextColumnName = nameof(TextRow.Text), AnswerColumnName = nameof(TextRow.Next) };
        }
        collect.Mode = s.Mode;

        MixedPrecisionVqTransformer quantized = null!;
        console.Progress().Columns(new TaskDescriptionColumn(), new ProgressBarColumn(), new PercentageColumn(), new ElapsedTimeColumn())
            .Start(ctx =>
            {
                var bars = new ChainProgress(ctx, cancellation);
                quantized = bars.Chain(ml, collect, s, scoreRows: false).Fit(calibration).LastTransformer;
                bars.Done();
            });
        cancellation.ThrowIfCancellationRequested();

        using var q = (OnnxModel)quantized.Model;
        double weights = quantized.Layers.Sum(l => (double)l.Weights);
        var table = new Table().Title($"{s.Method} at ≤ {s.Budget.ToString(CultureInfo.InvariantCulture)} bits/weight: {Markup.Escape(Path.GetFileName(onnx))}")
            .AddColumn("").AddColumn(new TableColumn("full precision").RightAligned()).AddColumn(new TableColumn("quantized").RightAligned());
        if (heldImages.Count + heldTexts.Count > 0)
        {
            using var scope = NewDisposeScope();
            using var _ = no_grad();
            var (before, after) = images ? (model.EmbedImages(heldImages), q.EmbedImages(heldImages)) : (model.Embed(heldTexts), q.Embed(heldTexts));
            var cosine = nn.functional.cosine_similarity(before, after, 1);
            table.AddRow($"output cosine to FP, {before.shape[0]} held-out items (mean / worst)", "1 / 1",
                         $"{cosine.mean().item<float>():F4} / {cosine.min().item<float>():F4}");
        }
        else table.AddRow("output cosine to FP", "—", "no held-out items (all of --data calibrated)");
        table.AddRow("bits per weight (all-in)", "32", $"{quantized.BitsPerWeight:F3}");
        table.AddRow($"size of the {quantized.Layers.Count} quantized layers", $"{weights * 4 / 1024:N0} KiB",
            $"{quantized.Layers.Sum(l => l.BitsPerWeight * l.Weights) / 8 / 1024:N0} KiB");

        byte[] bytes;
        string note;
        if (s.Format == "matmulnbits")
        {
            bytes = q.ToOnnx(quantized.Quantized.Layers, out var packed);
            note = $"{packed.Count} of {quantized.Layers.Count} layers as com.microsoft.MatMulNBits (ONNX Runtime only); the others dequantized float32";
        }
        else
        {
            bytes = q.ToOnnx();
            note = "dequantized float32 weights (ONNX Runtime, ML.NET ApplyOnnxModel)";
        }
        table.AddRow("ONNX file", $"{new FileInfo(onnx).Length / 1024.0:N0} KiB", $"{bytes.Length / 1024.0:N0} KiB");
        console.Write(table);
        AtomicFile.Write(s.Out, bytes);
        console.MarkupLine($"quantized ONNX: {Markup.Escape(s.Out)} ({Markup.Escape(note)})");
        if (s.LayersOut is not null)
        {
            quantized.SaveQuantized(s.LayersOut);
            console.MarkupLine($"quantized layers: {Markup.Escape(s.LayersOut)}");
        }
        if (s.Report is not null)
        {
            AtomicFile.WriteCsv(quantized.Report, s.Report);
            console.MarkupLine($"per-layer report: {Markup.Escape(s.Report)}");
        }
        return 0;
    }

    private static float[] Triple(string text, string option)
    {
        var parts = text.Split(',', StringSplitOptions.TrimEntries);
        if (parts.Length != 3 || !parts.All(p => float.TryParse(p, NumberStyles.Float, CultureInfo.InvariantCulture, out _)))
            throw new ArgumentException($"{option} takes three comma-separated numbers (one per channel), not '{text}'.");
        return parts.Select(p => float.Parse(p, CultureInfo.InvariantCulture)).ToArray();
    }
}
