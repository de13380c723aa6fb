using Msavq.MLNet.Synthetic;
using Msavq.MLNet.Format;
using Msavq.MLNet.Kernels;

namespace Msavq.MLNet.Tests.Kernels;

[TestClass]
public sealed class LutKernelTests
{
    // Every code path in one layer: K = 8 and 16 (nibble tiles), 32 and 256 (byte tiles), permuted, row-scaled.
    private static QuantizedLayer Mixed(int seed = 1) => SyntheticQuantizedLayer.Create(128, 256, 2, 64, 32,
        t => new[] { 8, 16, 32, 256, 16 }[t % 5], permuted: true, rowScaled: true, seed: seed);

    private static double RelativeError(float[] y, double[] exact)
    {
        double num = 0, den = 0;
        for (int i = 0; i < y.Length; i++) { num += (y[i] - exact[i]) * (y[i] - exact[i]); den += exact[i] * exact[i]; }
        return Math.Sqrt(num / den);
    }

    // x Ŵᵀ in float64 from QuantizedLayer.Dequantize, the weight the network runs with.
    private static double[] Exact(QuantizedLayer layer, float[] x, int batch)
    {
        var w = layer.Dequantize();
        var y = new double[batch * layer.Rows];
        for (int b = 0; b < batch; b++)
            for (int i = 0; i < layer.Rows; i++)
            {
                double s = 0;
                for (int j = 0; j < layer.Columns; j++) s += (double)w[(long)i * layer.Columns + j] * x[b * layer.Columns + j];
                y[b * layer.Rows + i] = s;
            }
        return y;
    }

    private static float[] Run(PackedVqWeight w, float[] x, int batch, LutKernelOptions o)
    {
        var y = new float[batch * w.Rows];
        LutKernel.Multiply(w, x, batch, y, o);
        return y;
    }

    [TestMethod]
    public void Repacking_DecodesToTheStoredWeight()
    {
        var layer = Mixed();
        var packed = PackedVqWeight.From(layer);
        var rows = new float[layer.Rows * layer.Columns];
        packed.DequantizeRows(0, layer.Rows, rows);
        CollectionAssert.AreEqual(layer.Dequantize(), rows);
        Assert.IsTrue(packed.Layout.Contains(TileCodes.Nibbles) && packed.Layout.Contains(TileCodes.Bytes));
    }

    [TestMethod]
    [DataRow(1, true)] [DataRow(3, true)] [DataRow(8, true)] [DataRow(1, false)] [DataRow(8, false)]
    public void FastPaths_MatchTheScalarReference(int batch, bool simd)
    {
        var layer = Mixed();
        var packed = PackedVqWeight.From(layer);
        var x = SyntheticQuantizedLayer.Activations(batch, layer.Columns, 7);
        var reference = new float[batch * layer.Rows];
        LutKernel.MultiplyReference(packed, x, batch, reference);
        var y = Run(packed, x, batch, new LutKernelOptions { UseSimd = simd, Threads = 1 });
        // Same int8 tables and exact integer sums per tile: only the order of float additions may differ.
        Assert.IsLessThan(1e-6, RelativeError(y, reference.Select(v => (double)v).ToArray()));
    }

    [TestMethod]
    public void RowGroupsNotAMultipleOfEight_UsePlainByteRows_AndStillMatch()
    {
        var layer = SyntheticQuantizedLayer.Create(48, 64, 2, 12, 32, t => t % 2 == 0 ? 32 : 64, seed: 6);
        var packed = PackedVqWeight.From(layer);
        Assert.AreEqual(1, packed.ByteBlockRows);
        var x = SyntheticQuantizedLayer.Activations(2, layer.Columns, 3);
        var reference = new float[2 * layer.Rows];
        LutKernel.MultiplyReference(packed, x, 2, reference);
        Assert.IsLessThan(1e-6, RelativeError(Run(packed, x, 2, LutKernelOptions.Default), reference.Select(v => (double)v).ToArray()));
        var rows = new float[layer.Rows * layer.Columns];
        packed.DequantizeRows(0, layer.Rows, rows);
        CollectionAssert.AreEqual(layer.Dequantize(), rows);
    }

    [TestMethod]
    public void Avx2_IsAvailable_SoTheShufflePathsAreTested()
    {
        // The SIMD test above is only meaningful where AVX2 exists; CI runs on such a machine.
        Assert.IsTrue(System.Runtime.Intrinsics.X86.Avx2.IsSupported, "this machine has no AVX2: the shuffle path is untested here");
    }

    [TestMethod]
    [DataRow(2, 16, 256, 32)]  // 2 bits/weight, nibble tiles
    [DataRow(4, 256, 64, 256)] // 2 bits/weight, byte tiles
    public void Int8Tables_StayWithinTwoPercentOfTheDequantizedProduct(int d, int k, int rowsPerGroup, int columnsPerGroup)
    {
        var layer = SyntheticQuantizedLayer.Create(256, 512, d, rowsPerGroup, columnsPerGroup, _ => k, seed: 3);
        var packed = PackedVqWeight.From(layer);
        foreach (int batch in new[] { 1, 8 })
        {
            var x = SyntheticQuantizedLayer.Activations(batch, layer.Columns, 11);
            double error = RelativeError(Run(packed, x, batch, LutKernelOptions.Default), Exact(layer, x, batch));
            Console.WriteLine($"d={d} K={k} batch={batch}: relative error {error:F4}"); // docs/kernels.md quotes these
            Assert.IsLessThan(0.02, error, $"batch {batch}");
            Assert.IsGreaterThan(1e-5, error, "int8 tables cannot be exact; the exact path was taken");
        }
    }

    [TestMethod]
    public void ExactLookups_MatchTheDequantizedProductTo1e5()
    {
        var layer = Mixed(2);
        var x = SyntheticQuantizedLayer.Activations(4, layer.Columns, 5);
        var y = Run(PackedVqWeight.From(layer), x, 4, new LutKernelOptions { ExactLookups = true });
        Assert.IsLessThan(1e-5, RelativeError(y, Exact(layer, x, 4)));
    }

    [TestMethod]
    public void OneAndTwoThreads_Agree_AndEachIsDeterministic()
    {
        var packed = PackedVqWeight.From(Mixed(4));
        var x = SyntheticQuantizedLayer.Activations(2, packed.Columns, 9);
        var one = Run(packed, x, 2, new LutKernelOptions { Threads = 1 });
        var two = Run(packed, x, 2, new LutKernelOptions { Threads = 2 });
        Assert.IsLessThan(1e-6, RelativeError(two, one.Select(v => (double)v).ToArray()));
        CollectionAssert.AreEqual(two, Run(packed, x, 2, new LutKernelOptions { Threads = 2 }));
    }

    [TestMethod]
    [DataRow(true)] [DataRow(false)]
    public void DecodeLoop_AllocatesNothingPerCall_OnOneThread(bool exact)
    {
        var packed = PackedVqWeight.From(Mixed(5));
        var x = SyntheticQuantizedLayer.Activations(1, packed.Columns, 3);
        var y = new float[packed.Rows];
        var o = new LutKernelOptions { Threads = 1, ExactLookups = exact };
        LutKernel.Multiply(packed, x, 1, y, o);   // warm-up: the thread's scratch grows to this layer
        var first = (float[])y.Clone();
        long before = GC.GetAllocatedBytesForCurrentThread();
        for (int i = 0; i < 200; i++) LutKernel.Multiply(packed, x, 1, y, o);
        long allocated = GC.GetAllocatedBytesForCurrentThread() - before;
        Assert.AreEqual(0L, allocated, $"{allocated} bytes allocated over 200 calls");
        CollectionAssert.AreEqual(first, y, "reused scratch changed the result");
    }

    [TestMethod]
    public void DecodeLoop_OnTwoThreads_AllocatesNoArrays()
    {
        // Parallel.For costs a few small objects per call; the tables and outputs (tens of KB here) are reused.
        var packed = PackedVqWeight.From(Mixed(5));
        var x = SyntheticQuantizedLayer.Activations(1, packed.Columns, 3);
        var y = new float[packed.Rows];
        var o = new LutKernelOptions { Threads = 2 };
        for (int i = 0; i < 20; i++) LutKernel.Multiply(packed, x, 1, y, o);
        // The counter is process-wide: whatever else runs meanwhile only adds, so the least of five rounds is the kernel's.
        double perCall = double.MaxValue;
        for (int round = 0; round < 5; round++)
        {
            long before = GC.GetTotalAllocatedBytes(precise: true);
            for (int i = 0; i < 200; i++) LutKernel.Multiply(packed, x, 1, y, o);
            perCall = Math.Min(perCall, (GC.GetTotalAllocatedBytes(precise: true) - before) / 200.0);
        }
        Assert.IsLessThan(2048.0, perCall, $"{perCall:F0} bytes per call");
    }

    [TestMethod]
    public void ScratchGrownForALargerLayer_StillGivesTheSmallerLayersResult()
    {
        var small = PackedVqWeight.From(Mixed(6));
        var large = PackedVqWeight.From(SyntheticQuantizedLayer.Create(256, 512, 2, 64, 32, t => 256, permuted: false, rowScaled: false, seed: 2));
        var xs = SyntheticQuantizedLayer.Activations(2, small.Columns, 1);
        var o = new LutKernelOptions { Threads = 1 };
        var before = Run(small, xs, 2, o);
        Run(large, SyntheticQuantizedLayer.Activations(8, large.Columns, 2), 8, o);
        CollectionAssert.AreEqual(before, Run(small, xs, 2, o));
    }

    [TestMethod]
    public void NonFiniteActivations_GiveNaNRows_AndLeaveTheOtherRowsAlone()
    {
        var packed = PackedVqWeight.From(Mixed());
        var x = SyntheticQuantizedLayer.Activations(3, packed.Columns, 2);
        var clean = Run(packed, x, 3, LutKernelOptions.Default);
        x[5] = float.NaN;
        x[2 * packed.Columns + 7] = float.PositiveInfinity;
        var y = Run(packed, x, 3, LutKernelOptions.Default);
        Assert.IsTrue(y.AsSpan(0, packed.Rows).ToArray().All(float.IsNaN));
        Assert.IsTrue(y.AsSpan(2 * packed.Rows, packed.Rows).ToArray().All(float.IsNaN));
        CollectionAssert.AreEqual(clean.AsSpan(packed.Rows, packed.Rows).ToArray(), y.AsSpan(packed.Rows, packed.Rows).ToArray());
    }

    [TestMethod]
    public void BadShapes_AreRejected_AndLargeCodebooks_AreNotTakenByTheKernel()
    {
        var packed = PackedVqWeight.From(Mixed());
        Assert.Throws<ArgumentException>(() => LutKernel.Multiply(packed, new float[10], 1, new float[packed.Rows]));
        Assert.Throws<ArgumentException>(() => LutKernel.Multiply(packed, new float[packed.Columns], 1, new float[3]));
        var big = SyntheticQuantizedLayer.Create(64, 64, 2, 64, 64, _ => 512, seed: 1);
        Assert.IsFalse(PackedVqWeight.Supports(big, out string why));
        StringAssert.Contains(Assert.Throws<NotSupportedException>(() => PackedVqWeight.From(big)).Message, why);
    }
}
