using Microsoft.Data.Analysis;
using Msavq.MLNet.Format;
using Msavq.MLNet.Quantization;

namespace Msavq.MLNet.Sensitivity;

/// <summary>
/// How one layer is to be quantized. Scalar methods use <see cref="Bits"/> and <see cref="GroupSize"/>; VQ methods
/// use <see cref="Layout"/> and one codebook size per tile (row-major tiles, §8.3's channel groups).
/// </summary>
public sealed record LayerPlan
{
    public required string Layer { get; init; }
    public required int Rows { get; init; }
    public required int Columns { get; init; }
    public required QuantizationMethod Method { get; init; }
    /// <summary>Scalar code bits (RTN, GPTQ).</summary>
    public int Bits { get; init; }
    /// <summary>Scalar group size in columns; -1 = one group per row.</summary>
    public int GroupSize { get; init; } = -1;
    public VqLayout? Layout { get; init; }
    /// <summary>K per tile, row-major (row group · column groups + column group).</summary>
    public int[]? TileCodebookSizes { get; init; }
    /// <summary>Combined salience per tile (§8.3), when computed.</summary>
    public double[]? TileSalience { get; init; }
    /// <summary>Input-column order the quantizer works in (modality-affinity bins); null = natural order.</summary>
    public long[]? ColumnOrder { get; init; }
    /// <summary>One fp16 scale per output row: rows are normalized before VQ so rows of different norm share codebooks well.</summary>
    public bool RowScales { get; init; }
    /// <summary>The second-order model the layer step uses (the one the allocation used).</summary>
    public Curvature Curvature { get; init; } = Curvature.Activation;
    /// <summary>ε of the output factor's floor (<see cref="SensitivityEstimator.Options.OutputFactorFloor"/>) the layer step uses.</summary>
    public double OutputFactorFloor { get; init; } = Defaults.OutputFactorFloor;
    /// <summary>r_ℓ: the weight of image tokens in this layer's A, b and G (1 = unweighted).</summary>
    public double VisionWeight { get; init; } = 1;
    /// <summary>Planned all-in cost.</summary>
    public required BitCost Cost { get; init; }
}

/// <summary>The output of <see cref="SensitivityEstimator"/>: per-layer quantization settings under one budget.</summary>
public sealed class BitAllocationPlan
{
    public required QuantizationMethod Method { get; init; }
    public required double TargetBitsPerWeight { get; init; }
    public required int VectorDimension { get; init; }
    public required bool MixedPrecision { get; init; }
    public required bool ModalityWeighting { get; init; }
    public required CodebookPrecision Precision { get; init; }
    public required IReadOnlyList<LayerPlan> Layers { get; init; }

    /// <summary>Planned all-in bits per weight over the quantized layers.</summary>
    public double BitsPerWeight => Layers.Sum(l => l.Cost.TotalBits) / Layers.Sum(l => (double)l.Cost.Weights);

    /// <summary>One row per tile (VQ) or per layer (scalar): where the bits went and why.</summary>
    public DataFrame ToDataFrame()
    {
        var layer = new List<string>(); var rowGroup = new List<int>(); var colGroup = new List<int>();
        var bits = new List<double>(); var k = new List<int>(); var salience = new List<double>();
        foreach (var l in Layers)
        {
            if (l.Layout is { } lay && l.TileCodebookSizes is { } sizes)
            {
                int cg = lay.ColumnGroups(l.Columns);
                for (int t = 0; t < sizes.Length; t++)
                {
                    layer.Add(l.Layer); rowGroup.Add(t / cg); colGroup.Add(t % cg);
                    bits.Add(Math.Log2(sizes[t]) / lay.VectorDim); k.Add(sizes[t]);
                    salience.Add(l.TileSalience?[t] ?? double.NaN);
                }
            }
            else
            {
                layer.Add(l.Layer); rowGroup.Add(-1); colGroup.Add(-1);
                bits.Add(l.Bits); k.Add(1 << l.Bits); salience.Add(double.NaN);
            }
        }
        return new DataFrame(
            new StringDataFrameColumn("Layer", layer), new Int32DataFrameColumn("RowGroup", rowGroup),
            new Int32DataFrameColumn("ColumnGroup", colGroup), new DoubleDataFrameColumn("IndexBitsPerWeight", bits),
            new Int32DataFrameColumn("CodebookSize", k), new DoubleDataFrameColumn("Salience", salience));
    }
}
