using Msavq.MLNet.Format;
using Msavq.MLNet.Kernels;
using Msavq.MLNet.Synthetic;

namespace Msavq.MLNet.Tests.Kernels;

/// <summary>The look-up kernels index tables by codes with pointers: a layer is checked whole before it is packed (issue 16.13).</summary>
[TestClass]
public sealed class PackedVqWeightValidationTests
{
    // Nibble tiles (K = 8, 16) and byte tiles (K = 32, 256), permuted, row-scaled.
    private static QuantizedLayer Mixed(int seed = 1) => SyntheticQuantizedLayer.Create(64, 128, 2, 32, 32,
        t => new[] { 8, 16, 32, 256, 16 }[t % 5], permuted: true, rowScaled: true, seed: seed);

    private static QuantizedLayer Copy(QuantizedLayer l, int[]? codes = null, int[]? sizes = null, sbyte[][]? values = null,
        Half[]? scales = null, int[]? order = null, Half[]? rowScales = null, bool dropOrder = false, bool dropRowScales = false) => new()
    {
        Name = l.Name, Rows = l.Rows, Columns = l.Columns, Kind = l.Kind, VectorDim = l.VectorDim, RowsPerGroup = l.RowsPerGroup,
        ColumnsPerGroup = l.ColumnsPerGroup, Int8Codebooks = l.Int8Codebooks,
        Codes = codes ?? l.Codes.ToArray(), CodebookSizes = sizes ?? l.CodebookSizes.ToArray(),
        CodebookValues = values ?? l.CodebookValues.Select(v => v.ToArray()).ToArray(),
        CodebookScales = scales ?? l.CodebookScales.ToArray(),
        ColumnOrder = dropOrder ? null : order ?? l.ColumnOrder?.ToArray(),
        RowScales = dropRowScales ? null : rowScales ?? l.RowScales?.ToArray(),
    };

    /// <summary>A layer with K = 32 in every tile, one of whose codes is <paramref name="code"/>.</summary>
    private static QuantizedLayer WithCode(int code)
    {
        var l = SyntheticQuantizedLayer.Create(32, 64, 2, 32, 32, _ => 32, seed: 2);
        var codes = l.Codes.ToArray();
        codes[5] = code;
        return Copy(l, codes: codes);
    }

    [TestMethod]
    [DataRow(32)]   // = K: one past the table
    [DataRow(255)]  // the probe of the issue
    [DataRow(300)]  // would be truncated to a byte
    [DataRow(-1)]
    public void CodeOutsideItsCodebook_IsRejected_NamingIt(int code)
    {
        var e = Assert.ThrowsExactly<ArgumentException>(() => PackedVqWeight.From(WithCode(code)));
        StringAssert.Contains(e.Message, $"code {code}");
        StringAssert.Contains(e.Message, "32 codewords");
        PackedVqWeight.From(WithCode(31));   // the last codeword is fine
    }

    [TestMethod]
    public void InconsistentLayers_AreRejected_WithTheReason()
    {
        var l = Mixed();
        string Error(QuantizedLayer bad) => Assert.ThrowsExactly<ArgumentException>(() => PackedVqWeight.From(bad)).Message;
        StringAssert.Contains(Error(Copy(l, codes: l.Codes[..^1])), "codes");
        StringAssert.Contains(Error(Copy(l, sizes: l.CodebookSizes[..^1])), "codebook sizes");
        StringAssert.Contains(Error(Copy(l, values: l.CodebookValues.Select((v, t) => t == 3 ? v[..^2] : v).ToArray())), "tile 3's codebook");
        var nanScale = l.CodebookScales.ToArray();
        nanScale[1] = Half.NaN;
        StringAssert.Contains(Error(Copy(l, scales: nanScale)), "tile 1's codebook scale");
        var infRow = l.RowScales!.ToArray();
        infRow[7] = Half.PositiveInfinity;
        StringAssert.Contains(Error(Copy(l, rowScales: infRow)), "row scale 7");
        var twice = l.ColumnOrder!.ToArray();
        twice[0] = twice[1];
        StringAssert.Contains(Error(Copy(l, order: twice)), "permutation");
        var sizes = l.CodebookSizes.ToArray();
        sizes[0] = 0;
        StringAssert.Contains(Error(Copy(l, sizes: sizes)), "K = 0");
    }

    [TestMethod]
    public void ReadOnlyViews_CannotChangeThePackedArrays()
    {
        var packed = PackedVqWeight.From(Mixed());
        Assert.IsFalse(typeof(PackedVqWeight).GetProperties().Any(p => p.PropertyType.IsArray), "no public array property");
        Assert.ThrowsExactly<NotSupportedException>(() => ((IList<int>)packed.K)[0] = 255);
    }

    /// <summary>
    /// Random damage to a valid layer: From either rejects it with ArgumentException, or accepts a layer whose products
    /// — every path — equal the product with its own decoded weight. Nothing else (no garbage, no other exception).
    /// </summary>
    [TestMethod]
    public void Fuzz_FromThenMultiply_RejectsOrComputesTheDecodedProduct()
    {
        var rng = new Random(16);
        var original = Mixed(3);
        int rejected = 0, accepted = 0;
        for (int trial = 0; trial < 600; trial++)
        {
            var codes = original.Codes.ToArray();
            var sizes = original.CodebookSizes.ToArray();
            var values = original.CodebookValues.Select(v => v.ToArray()).ToArray();
            var order = original.ColumnOrder!.ToArray();
            switch (trial % 6)
            {
                case 0: codes[rng.Next(codes.Length)] = rng.Next(-2, 300); break;
                case 1: for (int k = 0; k < 4; k++) codes[rng.Next(codes.Length)] = rng.Next(0, 8); break;   // below every K: valid
                case 2: sizes[rng.Next(sizes.Length)] = rng.Next(-1, 300); break;
                case 3: int t = rng.Next(values.Length); values[t] = values[t][..rng.Next(values[t].Length + 1)]; break;
                case 4: order[rng.Next(order.Length)] = rng.Next(-1, order.Length + 2); break;
                default: codes = codes[..rng.Next(codes.Length + 1)]; break;
            }
            var layer = Copy(original, codes: codes, sizes: sizes, values: values, order: order);
            PackedVqWeight packed;
            try { packed = PackedVqWeight.From(layer); }
            catch (ArgumentException) { rejected++; continue; }
            catch (NotSupportedException) { rejected++; continue; }   // K > 256: not for the look-up kernels
            accepted++;
            var x = SyntheticQuantizedLayer.Activations(2, layer.Columns, trial);
            var w = layer.Dequantize();
            foreach (var options in new[] { new LutKernelOptions { ExactLookups = true }, new LutKernelOptions { ExactLookups = true, UseSimd = false, Threads = 2 } })
            {
                var y = new float[2 * layer.Rows];
                LutKernel.Multiply(packed, x, 2, y, options);
                for (int b = 0; b < 2; b++)
                    for (int i = 0; i < layer.Rows; i++)
                    {
                        double exact = 0;
                        for (int j = 0; j < layer.Columns; j++) exact += (double)w[i * layer.Columns + j] * x[b * layer.Columns + j];
                        Assert.AreEqual(exact, y[b * layer.Rows + i], 1e-4 + 1e-4 * Math.Abs(exact), $"trial {trial}, row {i}");
                    }
            }
            var decoded = new float[layer.Rows * layer.Columns];
            packed.DequantizeRows(0, layer.Rows, decoded);
            CollectionAssert.AreEqual(w, decoded, $"trial {trial}");
        }
        Console.WriteLine($"{rejected} rejected, {accepted} accepted");
        Assert.IsGreaterThan(100, rejected);
        Assert.IsGreaterThan(50, accepted);
    }
}
