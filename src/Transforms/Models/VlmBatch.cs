using static TorchSharp.torch;

namespace Msavq.MLNet.Models;

/// <summary>A batch as tensors. Sequence layout: [bos, image tokens…, question tokens…, answer tokens…, pad…].</summary>
public sealed class VlmBatch : IDisposable
{
    /// <summary>[B, 3, H, W] float, normalised to [-1, 1].</summary>
    public required Tensor Pixels { get; init; }
    /// <summary>[B, T] int64 text ids: bos, question, answer, padding (the image tokens are not in here).</summary>
    public required Tensor Tokens { get; init; }
    /// <summary>[B, L] int64 next-token targets over the full sequence (image tokens included); -100 where no loss.</summary>
    public required Tensor Labels { get; init; }
    /// <summary>[B, L] <see cref="TokenModality"/> per position of the full sequence, padding marked as text.</summary>
    public required Tensor Modality { get; init; }
    /// <summary>[B, L] 1 for real positions, 0 for padding.</summary>
    public required Tensor Valid { get; init; }
    /// <summary>Per row, the position whose logits predict the first answer token.</summary>
    public required long[] AnswerPositions { get; init; }

    public long Count => Pixels.shape[0];

    public void Dispose()
    {
        Pixels.Dispose(); Tokens.Dispose(); Labels.Dispose(); Modality.Dispose(); Valid.Dispose();
    }
}
