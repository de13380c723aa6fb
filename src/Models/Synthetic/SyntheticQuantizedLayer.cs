using Msavq.MLNet.Format;

namespace Msavq.MLNet.Synthetic;

/// <summary>
/// Seeded vector-quantized layers with the statistics of real ones (int8 codewords of a rounded normal, fp16 scales,
/// uniform codes) for the kernel benchmarks and tests. Shared by bench and tests (linked source).
/// </summary>
public static class SyntheticQuantizedLayer
{
    /// <param name="codebookSize">K of tile t (mixed precision when it varies).</param>
    public static QuantizedLayer Create(int rows, int columns, int d, int rowsPerGroup, int columnsPerGroup,
        Func<int, int> codebookSize, bool permuted = false, bool rowScaled = false, int seed = 0, string name = "synthetic")
    {
        var rng = new Random(seed);
        int tiles = rows / rowsPerGroup * (columns / columnsPerGroup);
        var ks = Enumerable.Range(0, tiles).Select(codebookSize).ToArray();
        var values = ks.Select(k => Enumerable.Range(0, k * d).Select(_ => (sbyte)Math.Clamp(Math.Round(Normal(rng) * 40), -127, 127)).ToArray()).ToArray();
        var scales = ks.Select(_ => (Half)(0.02f / 40 * (0.5f + (float)rng.NextDouble()))).ToArray();
        int vecs = columns / d, cg = columns / columnsPerGroup;
        var codes = new int[(long)rows * vecs];
        for (int i = 0; i < rows; i++)
            for (int v = 0; v < vecs; v++)
                codes[(long)i * vecs + v] = rng.Next(ks[i / rowsPerGroup * cg + v * d / columnsPerGroup]);
        int[]? order = null;
        if (permuted)
        {
            order = Enumerable.Range(0, columns).ToArray();
            rng.Shuffle(order);
        }
        return new QuantizedLayer
        {
            Name = name, Rows = rows, Columns = columns, Kind = QuantizedKind.Vector, VectorDim = d,
            RowsPerGroup = rowsPerGroup, ColumnsPerGroup = columnsPerGroup, CodebookSizes = ks, CodebookValues = values,
            CodebookScales = scales, ColumnOrder = order, Codes = codes,
            RowScales = rowScaled ? Enumerable.Range(0, rows).Select(_ => (Half)(0.5 + rng.NextDouble())).ToArray() : null,
        };
    }

    /// <summary>Activation rows: standard normal with a few large channels, as LLM activations have.</summary>
    public static float[] Activations(int batch, int columns, int seed)
    {
        var rng = new Random(seed);
        var x = new float[batch * columns];
        for (int i = 0; i < x.Length; i++) x[i] = (float)(Normal(rng) * (i % columns % 97 == 0 ? 8 : 1));
        return x;
    }

    private static double Normal(Random rng) =>
        Math.Sqrt(-2 * Math.Log(1 - rng.NextDouble())) * Math.Cos(2 * Math.PI * rng.NextDouble());
}
