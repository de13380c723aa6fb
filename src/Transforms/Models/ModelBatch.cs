using static TorchSharp.torch;

namespace Msavq.MLNet.Models;

/// <summary>
/// What calibration needs of a batch, whatever the model: token positions with their modality and validity, and the
/// targets of the calibration objective (<see cref="IQuantizableModel.Logits"/> is aligned with <see cref="Labels"/>).
/// </summary>
public class ModelBatch : IDisposable
{
    /// <summary>[B, T] int64 token ids.</summary>
    public required Tensor Tokens { get; init; }
    /// <summary>[B, L] (or [B, 1] for one target per row) int64 class targets of the objective; -100 where no loss.</summary>
    public required Tensor Labels { get; init; }
    /// <summary>[B, L] <see cref="TokenModality"/> per position of the sequence the layers see, padding marked as text.</summary>
    public required Tensor Modality { get; init; }
    /// <summary>[B, L] 1 for real positions, 0 for padding.</summary>
    public required Tensor Valid { get; init; }

    public long Count => Tokens.shape[0];

    public virtual void Dispose()
    {
        Tokens.Dispose(); Labels.Dispose(); Modality.Dispose(); Valid.Dispose();
        GC.SuppressFinalize(this);
    }
}
