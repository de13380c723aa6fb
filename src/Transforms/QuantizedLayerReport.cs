using Microsoft.Data.Analysis;

namespace Msavq.MLNet;

/// <summary>What quantization did to one layer (a row of <see cref="MixedPrecisionVqTransformer.Report"/>).</summary>
/// <param name="Layer">Dotted layer name.</param>
/// <param name="Method">The method that quantized it (Rtn, Gptq, Gptvq, Msavq).</param>
/// <param name="IndexBitsPerWeight">Bits of the codes (indices) per weight.</param>
/// <param name="OverheadBitsPerWeight">Codebooks, scales, zeros and permutations per weight.</param>
/// <param name="Codebooks">Codebooks (VQ) or quantization groups per row (scalar).</param>
/// <param name="ProxyError">tr(E A Eᵀ)/tr(W A Wᵀ) with the unweighted input covariance A (architecture.md §8).</param>
/// <param name="Seconds">Wall time of this layer's quantization.</param>
public sealed record QuantizedLayerReport(
    string Layer, int Rows, int Columns, string Method, double IndexBitsPerWeight, double OverheadBitsPerWeight,
    int Codebooks, double ProxyError, double Seconds)
{
    public long Weights => (long)Rows * Columns;
    public double BitsPerWeight => IndexBitsPerWeight + OverheadBitsPerWeight;

    /// <summary>One row per layer: the per-layer report as a DataFrame.</summary>
    public static DataFrame ToDataFrame(IReadOnlyList<QuantizedLayerReport> layers) => new(
        new StringDataFrameColumn("Layer", layers.Select(l => l.Layer)),
        new Int32DataFrameColumn("Rows", layers.Select(l => l.Rows)),
        new Int32DataFrameColumn("Columns", layers.Select(l => l.Columns)),
        new StringDataFrameColumn("Method", layers.Select(l => l.Method)),
        new DoubleDataFrameColumn("BitsPerWeight", layers.Select(l => l.BitsPerWeight)),
        new DoubleDataFrameColumn("IndexBitsPerWeight", layers.Select(l => l.IndexBitsPerWeight)),
        new DoubleDataFrameColumn("OverheadBitsPerWeight", layers.Select(l => l.OverheadBitsPerWeight)),
        new Int32DataFrameColumn("Codebooks", layers.Select(l => l.Codebooks)),
        new DoubleDataFrameColumn("ProxyError", layers.Select(l => l.ProxyError)),
        new DoubleDataFrameColumn("Seconds", layers.Select(l => l.Seconds)));

    /// <summary>The report of layers read back from a file: bits as stored; proxy error and time were not kept (NaN, 0).</summary>
    public static IReadOnlyList<QuantizedLayerReport> FromStored(Format.QuantizedModel stored) => stored.Layers.Select(l =>
    {
        var cost = l.Cost();
        return new QuantizedLayerReport(l.Name, l.Rows, l.Columns, stored.Method, cost.IndexBitsPerWeight, cost.OverheadBitsPerWeight,
            l.Kind == Format.QuantizedKind.Scalar ? l.Groups : l.CodebookSizes.Length, double.NaN, 0);
    }).ToList();

    /// <summary>All-in bits per weight over a set of layers (weighted by their sizes).</summary>
    public static double AverageBitsPerWeight(IReadOnlyList<QuantizedLayerReport> layers) =>
        layers.Sum(l => l.BitsPerWeight * l.Weights) / Math.Max(1, layers.Sum(l => l.Weights));
}
