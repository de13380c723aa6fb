using Msavq.MLNet.Format;
using static TorchSharp.torch;

namespace Msavq.MLNet.Quantization;

/// <summary>
/// A weight quantized to a per-row, per-group uniform grid (RTN, GPTQ). Codes are stored in the original column order;
/// <see cref="GroupOfColumn"/> says which (scale, zero) column serves each input column (act-order makes it a permutation).
/// </summary>
public sealed class ScalarQuantizedWeight : IDisposable
{
    public required Tensor Codes { get; init; }          // [m, n] integer-valued
    public required Tensor Scales { get; init; }         // [m, groups]
    public required Tensor Zeros { get; init; }          // [m, groups]
    public required int[] GroupOfColumn { get; init; }   // [n]
    public required int Bits { get; init; }
    public required int GroupSize { get; init; }         // columns per group; n when per channel
    /// <summary>Column order the sweep used (act-order); null when natural.</summary>
    public long[]? Permutation { get; init; }

    public long Rows => Codes.shape[0];
    public long Columns => Codes.shape[1];

    /// <summary>Ŵ = scale·(code − zero) per element.</summary>
    public Tensor Dequantize()
    {
        using var scope = NewDisposeScope();
        var idx = tensor(GroupOfColumn.Select(g => (long)g).ToArray(), device: Codes.device);
        var s = Scales.index_select(1, idx);
        var z = Zeros.index_select(1, idx);
        return (s * (Codes - z)).MoveToOuterDisposeScope();
    }

    /// <summary>All-in cost: codes, an fp16 scale and a <see cref="Bits"/>-bit zero per row and group, any permutation.</summary>
    public BitCost Cost() => BitCost.Scalar(Rows, Columns, Bits, Scales.shape[1], ColumnMapStored);

    /// <summary>
    /// Whether a per-column group map must be stored: only act-order with dynamic groups scatters a group's columns.
    /// Per-channel grids and static groups keep codes in their original positions, so the sweep order costs nothing.
    /// </summary>
    public bool ColumnMapStored { get; init; }

    public void Dispose() { Codes.Dispose(); Scales.Dispose(); Zeros.Dispose(); }
}
