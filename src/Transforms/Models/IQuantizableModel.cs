using TorchSharp;
using static TorchSharp.torch;

namespace Msavq.MLNet.Models;

/// <summary>What each token of a batch is; calibration weighs image and text tokens separately (algorithm.md §7.5).</summary>
public enum TokenModality : byte { Text = 0, Image = 1, Answer = 2 }

/// <summary>Which part of a VLM a layer belongs to; algorithm.md §8.1 quantizes the language model by default.</summary>
public enum LayerRole { Vision, Projector, Language }

/// <summary>A quantizable Linear layer, by dotted name, with the block it belongs to (for sequential mode).</summary>
public sealed record QuantizableLayer(string Name, int Block, LayerRole Role, TorchSharp.Modules.Linear Module);

/// <summary>
/// The model contract of architecture.md §4, the part calibration and quantization need: any TorchSharp model that
/// supplies these can be calibrated and quantized, whatever it computes. Implementations invoke every listed Linear
/// through <c>call()</c>, so forward hooks see it. VLMs that answer questions add <see cref="IVqaModel"/>.
/// </summary>
public interface IQuantizableModel
{
    /// <summary>The Linear layers to quantize, in forward order, grouped into blocks.</summary>
    IReadOnlyList<QuantizableLayer> QuantizableLayers { get; }

    /// <summary>The device the model's parameters live on.</summary>
    Device Device { get; }

    /// <summary>Turns calibration rows into tensors on <see cref="Device"/>.</summary>
    ModelBatch Encode(IReadOnlyList<ModelRow> rows);

    /// <summary>
    /// Logits of the calibration objective, [batch, length, classes], aligned with <see cref="ModelBatch.Labels"/>:
    /// the calibration loss is their cross-entropy (next-token prediction for a VLM, an in-batch contrastive loss
    /// for a sentence encoder).
    /// </summary>
    Tensor Logits(ModelBatch batch);

    /// <summary>
    /// An independent copy with its own parameters on the same device, so a quantizer can overwrite weights while
    /// the caller keeps the full-precision model.
    /// </summary>
    IQuantizableModel Clone();

    /// <summary>
    /// Why the model cannot calibrate on <paramref name="row"/> — a target outside its vocabulary, a text longer than it
    /// reads, an image of the wrong size — or null when it can. Calibration checks every row before any work and names
    /// the first bad one. The default accepts every row (<see cref="Encode"/> still rejects what it cannot encode).
    /// </summary>
    string? RowProblem(ModelRow row) => null;
}

/// <summary>Predicted answers with the model's probability for each.</summary>
public sealed record VlmPrediction(string[] Answers, float[] Scores);

/// <summary>A VLM that answers questions about images: what the scoring transformer and the VQA evaluation need.</summary>
public interface IVqaModel : IQuantizableModel
{
    /// <summary>Turns rows into tensors on <see cref="IQuantizableModel.Device"/>.</summary>
    new VlmBatch Encode(IReadOnlyList<ModelRow> rows);

    /// <summary>Mean cross-entropy over answer tokens.</summary>
    Tensor Loss(VlmBatch batch);

    /// <summary>Logits of the first answer token, [batch, vocabulary].</summary>
    Tensor AnswerLogits(VlmBatch batch);

    /// <summary>The text of an answer token id (a column of <see cref="AnswerLogits"/>).</summary>
    string AnswerText(long tokenId);

    /// <summary>Greedy answers and their probabilities.</summary>
    VlmPrediction Predict(VlmBatch batch);
}

/// <summary>
/// One row a model reads, for calibration or scoring: image bytes (H×W×3; empty for a text-only model), the text,
/// and the target of the calibration objective when known — a VLM's answer, or a sentence encoder's positive partner
/// (the next sentence).
/// </summary>
public readonly record struct ModelRow(byte[] Image, string Text, string? Target = null);

/// <summary>A model whose quantized Linear layers can run on their packed codes (<see cref="Kernels.QuantizedLinear"/>).</summary>
public interface ISupportsLookupKernels
{
    /// <summary>
    /// Swaps in a <see cref="Kernels.QuantizedLinear"/> for every stored layer the look-up kernels run; returns how many.
    /// <paramref name="smallBatchRows"/>: most activation rows per call that take the look-up kernel (decoding);
    /// <paramref name="exactLayers"/>: layers too sensitive for int8 tables, which get float32 ones.
    /// </summary>
    int UseLookupKernels(Format.QuantizedModel quantized, Kernels.LutKernelOptions? kernel = null, int smallBatchRows = 8,
                         IEnumerable<string>? exactLayers = null);
}
