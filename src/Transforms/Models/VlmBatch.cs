using static TorchSharp.torch;

namespace Msavq.MLNet.Models;

/// <summary>A VLM batch as tensors. Sequence layout: [bos, image tokens…, question tokens…, answer tokens…, pad…].</summary>
/// <remarks>
/// <see cref="ModelBatch.Tokens"/> holds the text ids only (bos, question, answer, padding; the image tokens are not
/// in there); <see cref="ModelBatch.Labels"/>, <see cref="ModelBatch.Modality"/> and <see cref="ModelBatch.Valid"/>
/// cover the full sequence, image tokens included.
/// </remarks>
public sealed class VlmBatch : ModelBatch
{
    /// <summary>[B, 3, H, W] float, normalised to [-1, 1].</summary>
    public required Tensor Pixels { get; init; }
    /// <summary>Per row, the position whose logits predict the first answer token.</summary>
    public required long[] AnswerPositions { get; init; }

    public override void Dispose()
    {
        Pixels.Dispose();
        base.Dispose();
    }
}
