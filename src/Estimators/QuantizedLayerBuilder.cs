using Msavq.MLNet.Format;
using Msavq.MLNet.Quantization;
using static TorchSharp.torch;

namespace Msavq.MLNet;

/// <summary>Turns the engine's results into the stored form (<see cref="QuantizedLayer"/>), whose dequantization the network then uses.</summary>
internal static class QuantizedLayerBuilder
{
    public static QuantizedLayer FromVector(string name, VectorQuantizedWeight q, long[]? columnOrder, Tensor? rowScales)
    {
        int tiles = q.Codebooks.Length, d = q.Layout.VectorDim;
        bool int8 = q.Precision == CodebookPrecision.Int8;
        if (q.Precision == CodebookPrecision.Float32)
            throw new NotSupportedException("Float32 codebooks are not storable; use Int8 or Float16.");
        var values = new sbyte[int8 ? tiles : 0][];
        var scales = new Half[int8 ? tiles : 0];
        var halves = new Half[int8 ? 0 : tiles][];
        for (int t = 0; t < tiles; t++)
        {
            var book = q.Codebooks[t].to(ScalarType.Float32).cpu().data<float>().ToArray();
            if (!int8) { halves[t] = book.Select(x => (Half)x).ToArray(); continue; }
            // Codebook.Round stored q·s with s an fp16 value and |q| ≤ 127: recover both exactly.
            float max = book.Length == 0 ? 0 : book.Max(Math.Abs);
            var s = (Half)(max > 0 ? max / 127.0 : 1.0);
            float sf = (float)s;
            values[t] = book.Select(x => (sbyte)Math.Clamp(Math.Round(x / sf), -127, 127)).ToArray();
            scales[t] = s;
            for (int i = 0; i < book.Length; i++)
                if (values[t][i] * sf != book[i])
                    throw new InvalidOperationException($"Layer '{name}': codebook {t} is not on its int8 grid (codeword {i}).");
        }
        return new QuantizedLayer
        {
            Name = name, Rows = (int)q.Rows, Columns = (int)q.Columns, Kind = QuantizedKind.Vector, VectorDim = d,
            RowsPerGroup = q.Layout.RowsPerGroup, ColumnsPerGroup = q.Layout.ColumnsPerGroup,
            CodebookSizes = q.Codebooks.Select(c => (int)c.shape[0]).ToArray(), Int8Codebooks = int8,
            CodebookValues = values, CodebookScales = scales, CodebookHalves = halves,
            Codes = q.Indices.to(ScalarType.Int32).cpu().data<int>().ToArray(),
            ColumnOrder = columnOrder?.Select(x => (int)x).ToArray(),
            RowScales = rowScales?.to(ScalarType.Float32).cpu().data<float>().Select(x => (Half)x).ToArray(),
        };
    }

    public static QuantizedLayer FromScalar(string name, ScalarQuantizedWeight q)
    {
        var zeros = q.Zeros.to(ScalarType.Float64).cpu().data<double>().ToArray();
        if (zeros.Any(z => z != Math.Round(z))) throw new InvalidOperationException($"Layer '{name}': zero points are not integers.");
        return new QuantizedLayer
        {
            Name = name, Rows = (int)q.Rows, Columns = (int)q.Columns, Kind = QuantizedKind.Scalar, Bits = q.Bits, GroupSize = q.GroupSize,
            GroupOfColumn = q.ColumnMapStored ? q.GroupOfColumn : null,
            Scales = q.Scales.to(ScalarType.Float32).cpu().data<float>().Select(x => (Half)x).ToArray(),
            Zeros = zeros.Select(z => (int)z).ToArray(),
            Codes = q.Codes.to(ScalarType.Int32).cpu().data<int>().ToArray(),
        };
    }
}
