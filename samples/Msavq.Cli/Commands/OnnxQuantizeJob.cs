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
/// <c>msavq quantize --onnx MODEL.onnx --data DATA --out OUT</c>: a user's own ONNX model through the same chain.
/// DATA is a folder of images (an image model: every file SkiaSharp decodes, in name order), a text file of lines (a
/// sentence encoder, with <c>--vocab</c>; each line's partner is the next), or a CSV file with a header whose column
/// named as the graph input (or <c>image</c>/<c>text</c>) holds image paths relative to the CSV, or texts (with
/// <c>--vocab</c>; a <c>next</c> column, if there is one, names each text's partner). The first <c>--calibration</c>
/// items calibrate; the next ones (up to 64) are the before/after table's held-out items: cosine of the quantized to
/// the full-precision output vector. <c>--format</c>: dequantized or matmulnbits ONNX, or msavq — an ML.NET model zip
/// (<c>MsavqPipeline.Load</c>) holding the quantized layers as codes and the graph, whose transformer adds each row's
/// vector as a column.
/// </summary>
internal static class OnnxQuantizeJob
{
    private static readonly string[] ImageExtensions = [".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp"];
    private const int HeldOut = 64;
    /// <summary>The formats of <c>--format</c>, and the extension <c>--out</c> takes with each.</summary>
    private static readonly Dictionary<string, string> Formats = new() { ["dequantized"] = ".onnx", ["matmulnbits"] = ".onnx", ["msavq"] = ".zip" };

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
        if (s.Data is null) throw new ArgumentException("--onnx needs --data: a folder of images, a text file of lines or a CSV file.");
        if (!Formats.TryGetValue(s.Format, out var extension))
            throw new ArgumentException($"--format must be {string.Join(", ", Formats.Keys.SkipLast(1))} or {Formats.Keys.Last()}, not '{s.Format}'.");
        if (s.Out == QuantizeCommand.DefaultOut || !s.Out.EndsWith(extension, StringComparison.OrdinalIgnoreCase))
            throw new ArgumentException($"--onnx needs --out OUT{extension}, the {(extension == ".zip" ? "ML.NET model zip" : "quantized ONNX file")} to write (--format {s.Format}).");
        AtomicFile.EnsureWritable(s.Out, "--out");
        if (s.LayersOut is not null) AtomicFile.EnsureWritable(s.LayersOut, "--layers-out");
        if (s.Report is not null) AtomicFile.EnsureWritable(s.Report, "--report");
        bool folder = Directory.Exists(s.Data);
        if (!folder && !File.Exists(s.Data)) throw new FileNotFoundException($"--data: no such folder or file: {s.Data}", s.Data);
        var csv = !folder && s.Data.EndsWith(".csv", StringComparison.OrdinalIgnoreCase) ? CsvTable.Read(s.Data) : null;
        // A folder holds images, a text file lines; a CSV either: texts when a vocabulary is given.
        bool images = folder || (csv != null && s.Vocab is null);
        if (!images && s.Vocab is null) throw new ArgumentException("--data is a text file: a text model needs --vocab VOCAB.txt (its WordPiece vocabulary).");
        if (s.Vocab is not null && !File.Exists(s.Vocab)) throw new FileNotFoundException($"--vocab: file not found: {s.Vocab}", s.Vocab);

        var ml = new MLContext(seed: s.Seed);
        TorchSharp.torch.set_num_threads(s.Threads);
        var layerOptions = new OnnxLayerOptions { NamePattern = s.Layers, MinimumWeights = s.MinWeights };
        byte[] graph = File.ReadAllBytes(onnx);
        using var model = images
            ? OnnxModel.Load(graph, new OnnxImageOptions
            {
                ChannelOrder = s.Channels.Equals("bgr", StringComparison.OrdinalIgnoreCase) ? ImageChannelOrder.Bgr : ImageChannelOrder.Rgb,
                Scale = s.Scale, Mean = Triple(s.Mean, "--mean"), Std = Triple(s.Std, "--std"),
            }, layerOptions, source: onnx)
            : OnnxModel.Load(graph, TextOptions(graph, s.Vocab!), layerOptions, source: onnx);

        IDataView calibration;
        List<byte[]> heldImages = [];
        List<string> heldTexts = [];
        CalibrationCollector.Options collect;
        if (images)
        {
            var files = csv != null ? ImagePaths(csv, model.Image!.InputName!) : ImageFiles(s.Data);
            calibration = ml.Data.LoadFromEnumerable(files.Take(s.Calibration).Select(f => new ImageRow { Image = File.ReadAllBytes(f) }).ToList());
            heldImages = files.Skip(s.Calibration).Take(HeldOut).Select(File.ReadAllBytes).ToList();
            collect = new CalibrationCollector.Options { Model = model, ImageColumnName = nameof(ImageRow.Image), TextColumnName = null, AnswerColumnName = null };
        }
        else
        {
            var pairs = csv != null ? TextPairs(csv, model.Text!.InputIdsName) : LinePairs(s.Data);
            calibration = ml.Data.LoadFromEnumerable(pairs.Take(s.Calibration).Select(p => new TextRow { Text = p.Text, Next = p.Next }).ToList());
            // One pair is skipped: the first held-out text would otherwise have been a calibration partner.
            heldTexts = pairs.Skip(s.Calibration + 1).Take(HeldOut).Select(p => p.Text).ToList();
            collect = new CalibrationCollector.Options { Model = model, ImageColumnName = null, TextColumnName = nameof(TextRow.Text), AnswerColumnName = nameof(TextRow.Next) };
        }
        collect.Mode = s.Mode;

        TransformerChain<MixedPrecisionVqTransformer> pipeline = null!;
        MixedPrecisionVqTransformer quantized = null!;
        console.Progress().Columns(new TaskDescriptionColumn(), new ProgressBarColumn(), new PercentageColumn(), new ElapsedTimeColumn())
            .Start(ctx =>
            {
                var bars = new ChainProgress(ctx, cancellation);
                pipeline = bars.Chain(ml, collect, s, scoreRows: false, featureColumn: s.Format == "msavq" ? FeatureColumn(model) : null).Fit(calibration);
                quantized = pipeline.LastTransformer;
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

        string note;
        if (s.Format == "msavq")
        {
            MsavqPipeline.Save(ml, pipeline, calibration.Schema, s.Out);
            table.AddRow("ML.NET model zip (codes and graph)", $"{graph.Length / 1024.0:N0} KiB (ONNX)", $"{new FileInfo(s.Out).Length / 1024.0:N0} KiB");
            note = $"an ML.NET model zip: load with MsavqPipeline.Load; its transformer reads column '{FeatureInput(model)}' and adds " +
                   $"'{quantized.FeatureColumn}' ({model.FeatureLength} floats per row)";
            console.Write(table);
        }
        else
        {
            byte[] bytes;
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
            table.AddRow("ONNX file", $"{graph.Length / 1024.0:N0} KiB", $"{bytes.Length / 1024.0:N0} KiB");
            console.Write(table);
            AtomicFile.Write(s.Out, bytes);
        }
        console.MarkupLine($"{(s.Format == "msavq" ? "pipeline" : "quantized ONNX")}: {Markup.Escape(s.Out)} ({Markup.Escape(note)})");
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

    /// <summary>
    /// A BERT export's text options, without the attention mask or token types where the graph has no such input
    /// (the library's defaults name all three; a graph that reads fewer would be refused).
    /// </summary>
    private static OnnxTextOptions TextOptions(byte[] onnx, string vocab)
    {
        var text = OnnxTextOptions.Bert(vocab);
        Onnx.GraphProto graph;
        try { graph = Onnx.ModelProto.Parser.ParseFrom(onnx).Graph; }
        catch (Google.Protobuf.InvalidProtocolBufferException) { return text; }   // loading says what is wrong with the file
        if (graph is null) return text;
        var initializers = graph.Initializer.Select(i => i.Name).ToHashSet();
        var inputs = graph.Input.Select(i => i.Name).Where(n => !initializers.Contains(n)).ToHashSet();
        return text with
        {
            AttentionMaskName = inputs.Contains(text.AttentionMaskName!) ? text.AttentionMaskName : null,
            TokenTypeIdsName = inputs.Contains(text.TokenTypeIdsName!) ? text.TokenTypeIdsName : null,
        };
    }

    /// <summary>The column a saved pipeline adds: a sentence or image embedding, or a classifier's scores.</summary>
    private static string FeatureColumn(OnnxModel model) =>
        model.Image is { Output: OnnxOutputKind.Logits or OnnxOutputKind.Probabilities } ? "Scores" : "Embedding";

    private static string FeatureInput(OnnxModel model) => model.Image != null ? nameof(ImageRow.Image) : nameof(TextRow.Text);

    private static List<string> ImageFiles(string folder)
    {
        var files = Directory.EnumerateFiles(folder).Where(f => ImageExtensions.Contains(Path.GetExtension(f).ToLowerInvariant()))
            .Order(StringComparer.Ordinal).ToList();
        if (files.Count == 0) throw new ArgumentException($"--data: {folder} holds no image files ({string.Join(", ", ImageExtensions)}).");
        return files;
    }

    /// <summary>The image paths of a CSV's column named as the graph input (or image, path), relative to the CSV's folder; every one must exist.</summary>
    private static List<string> ImagePaths(CsvTable csv, string input)
    {
        int column = csv.Column(input, "image", "path");
        if (column < 0)
            throw new ArgumentException($"--data: {csv.Path} has no column named '{input}' (the graph's image input), 'image' or 'path' " +
                                        $"(its columns: {string.Join(", ", csv.Header)}).");
        string root = Path.GetDirectoryName(Path.GetFullPath(csv.Path))!;
        var files = csv.Rows.Select(r => Path.GetFullPath(r[column].Trim(), root)).ToList();
        if (files.Count == 0) throw new ArgumentException($"--data: {csv.Path} has no rows.");
        if (files.FirstOrDefault(f => !File.Exists(f)) is { } missing)
            throw new FileNotFoundException($"--data: {csv.Path} names an image that does not exist: {missing}", missing);
        return files;
    }

    /// <summary>Each non-empty line with the next as its partner.</summary>
    private static List<(string Text, string Next)> LinePairs(string path)
    {
        var lines = File.ReadLines(path).Where(l => !string.IsNullOrWhiteSpace(l)).ToList();
        if (lines.Count < 2) throw new ArgumentException($"--data: {path} has {lines.Count} non-empty lines; calibration pairs each line with the next.");
        return lines.Zip(lines.Skip(1)).ToList();
    }

    /// <summary>
    /// The texts of a CSV's column named as the graph's token-id input (or text), each with its row's <c>next</c> column
    /// when there is one, else with the next row's text.
    /// </summary>
    private static List<(string Text, string Next)> TextPairs(CsvTable csv, string input)
    {
        int column = csv.Column(input, "text");
        if (column < 0)
            throw new ArgumentException($"--data: {csv.Path} has no column named '{input}' (the graph's token-id input) or 'text' " +
                                        $"(its columns: {string.Join(", ", csv.Header)}).");
        int next = csv.Column("next");
        List<(string, string)> pairs;
        if (next >= 0) pairs = csv.Rows.Select(r => (r[column], r[next])).Where(p => !string.IsNullOrWhiteSpace(p.Item1) && !string.IsNullOrWhiteSpace(p.Item2)).ToList();
        else
        {
            var texts = csv.Rows.Select(r => r[column]).Where(t => !string.IsNullOrWhiteSpace(t)).ToList();
            pairs = texts.Zip(texts.Skip(1)).ToList();
        }
        if (pairs.Count == 0) throw new ArgumentException($"--data: {csv.Path} gives no text pairs (texts with a non-empty 'next' column, or at least two rows).");
        return pairs;
    }

    private static float[] Triple(string text, string option)

    {
        var parts = text.Split(',', StringSplitOptions.TrimEntries);
        if (parts.Length != 3 || !parts.All(p => float.TryParse(p, NumberStyles.Float, CultureInfo.InvariantCulture, out _)))
            throw new ArgumentException($"{option} takes three comma-separated numbers (one per channel), not '{text}'.");
        return parts.Select(p => float.Parse(p, CultureInfo.InvariantCulture)).ToArray();
    }
}
