using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;

namespace Msavq.MLNet.Kernels;

/// <summary>
/// y = x Ŵᵀ for a vector-quantized Ŵ and a few activation rows, computed on the packed codes (no decoded matrix):
/// per tile, <see cref="LookupTables"/> tabulates codeword·activation products, rounded to int8 with one scale per
/// tile; rows then sum table entries picked by their codes. Tiles with K ≤ 16 use AVX2 byte shuffles — 32 rows per
/// instruction from a 16-entry table held in a register (the T-MAC / LUT-GEMM idea); other tiles use a scalar loop.
/// Threads split the input dimension (column groups), each with private tables and a private output, summed at the
/// end in thread order so a given thread count is deterministic.
/// </summary>
public static unsafe class LutKernel
{
    /// <summary>
    /// <paramref name="y"/> [batch × Rows] = <paramref name="x"/> [batch × Columns] times the layer's transposed weight.
    /// An activation row holding NaN or ±∞ gives a row of NaN.
    /// </summary>
    public static void Multiply(PackedVqWeight w, ReadOnlySpan<float> x, int batch, Span<float> y, LutKernelOptions? options = null)
    {
        options ??= LutKernelOptions.Default;
        Check(w, x, batch, y);
        // Buffers come from the calling thread's scratch (and each worker's), grown once and reused: a decode loop
        // calling this per token allocates nothing on the one-thread path (LutKernelTests counts it).
        var scratch = LutScratch.Rent();
        try { Multiply(w, x, batch, y, options, scratch); }
        finally { LutScratch.Return(scratch); }
    }

    private static void Multiply(PackedVqWeight w, ReadOnlySpan<float> x, int batch, Span<float> y, LutKernelOptions options, LutScratch scratch)
    {
        var xp = LutScratch.Ensure(ref scratch.Input, x.Length);
        Permute(w, x, batch, xp);
        int threads = Math.Clamp(options.Threads, 1, w.ColumnGroups);
        if (scratch.Partial.Length < threads) Array.Resize(ref scratch.Partial, threads);
        var partial = scratch.Partial;
        int outputs = batch * w.Rows;
        for (int t = 0; t < threads; t++) LutScratch.Ensure(ref partial[t], outputs);
        if (threads == 1) Part(w, xp, batch, 0, w.ColumnGroups, options.ExactLookups, options.UseSimd, partial[0]);
        else Shares(w, xp, batch, threads, options, partial);
        Reduce(w, partial, threads, batch, y);
        NonFiniteRows(w, x, batch, y);
    }

    // Its own method: the lambda's closure would otherwise be allocated on every call, one thread or not.
    private static void Shares(PackedVqWeight w, float[] xp, int batch, int threads, LutKernelOptions options, float[][] partial) =>
        Parallel.For(0, threads, new ParallelOptions { MaxDegreeOfParallelism = threads }, t =>
            Part(w, xp, batch, w.ColumnGroups * t / threads, w.ColumnGroups * (t + 1) / threads, options.ExactLookups, options.UseSimd, partial[t]));

    /// <summary>
    /// The scalar reference: the same tables (int8, or float with <paramref name="exact"/>), summed one look-up at a
    /// time through <see cref="PackedVqWeight.Code"/>, one thread. The fast paths are tested against it.
    /// </summary>
    public static void MultiplyReference(PackedVqWeight w, ReadOnlySpan<float> x, int batch, Span<float> y, bool exact = false)
    {
        Check(w, x, batch, y);
        var xp = new float[x.Length];
        Permute(w, x, batch, xp);
        var table = new float[ScratchSize(w)];
        var q = new sbyte[table.Length];
        var scales = new float[LookupTables.Groups(w.Positions)];
        var max = new float[scales.Length];
        var acc = new float[batch * w.Rows];
        fixed (float* t = table, s = scales, m = max, xs = xp)
        fixed (sbyte* tq = q)
            for (int cg = 0; cg < w.ColumnGroups; cg++)
                for (int rg = 0; rg < w.RowGroups; rg++)
                {
                    int tile = rg * w.ColumnGroups + cg, stride = w._stride[tile];
                    for (int b = 0; b < batch; b++)
                    {
                        LookupTables.Build(w, tile, xs + b * w.Columns + cg * w.ColumnsPerGroup, t, m, simd: false);
                        LookupTables.Quantize(t, w.Positions, stride, m, tq, s, simd: false);
                        for (int r = 0; r < w.RowsPerGroup; r++)
                        {
                            ref float o = ref acc[b * w.Rows + rg * w.RowsPerGroup + r];
                            float sum = 0;
                            for (int g = 0; g < scales.Length; g++)
                            {
                                int isum = 0;
                                for (int p = g * LookupTables.PositionsPerScale; p < Math.Min(w.Positions, (g + 1) * LookupTables.PositionsPerScale); p++)
                                    if (exact) sum += t[p * stride + w.Code(tile, r, p)];
                                    else isum += tq[p * stride + w.Code(tile, r, p)];
                                if (!exact) o += s[g] * isum;
                            }
                            if (exact) o += sum;
                        }
                    }
                }
        Reduce(w, new[] { acc }, 1, batch, y);
        NonFiniteRows(w, x, batch, y);
    }

    private static void Check(PackedVqWeight w, ReadOnlySpan<float> x, int batch, Span<float> y)
    {
        ArgumentNullException.ThrowIfNull(w);
        if (batch < 1) throw new ArgumentOutOfRangeException(nameof(batch), batch, "At least one row.");
        if (x.Length != (long)batch * w.Columns) throw new ArgumentException($"x holds {x.Length} values; {batch}×{w.Columns} expected.", nameof(x));
        if (y.Length != (long)batch * w.Rows) throw new ArgumentException($"y holds {y.Length} values; {batch}×{w.Rows} expected.", nameof(y));
    }

    // +4: the gather reads a dword at each byte entry.
    private static int ScratchSize(PackedVqWeight w) => w.Positions * w._stride.Max() + 4;

    // Codes are in the permuted column order (docs/quantized-format.md): gather x once instead of scattering W.
    // Non-finite values are zeroed here (int8 scales would turn them into garbage) and their rows set to NaN after.
    [MethodImpl(MethodImplOptions.AggressiveOptimization)] // kernels: skip tier-0 code
    private static void Permute(PackedVqWeight w, ReadOnlySpan<float> x, int batch, float[] xp)
    {
        for (int b = 0; b < batch; b++)
            for (int j = 0; j < w.Columns; j++)
            {
                float v = x[b * w.Columns + (w._columnOrder?[j] ?? j)];
                xp[b * w.Columns + j] = float.IsFinite(v) ? v : 0;
            }
    }

    private static void NonFiniteRows(PackedVqWeight w, ReadOnlySpan<float> x, int batch, Span<float> y)
    {
        for (int b = 0; b < batch; b++)
            foreach (float v in x.Slice(b * w.Columns, w.Columns))
                if (!float.IsFinite(v)) { y.Slice(b * w.Rows, w.Rows).Fill(float.NaN); break; }
    }

    private static void Reduce(PackedVqWeight w, float[][] partial, int count, int batch, Span<float> y)
    {
        y.Clear();
        for (int t = 0; t < count; t++)
        {
            var p = partial[t];
            for (int i = 0; i < y.Length; i++) y[i] += p[i];
        }
        if (w._rowScales is { } s)
            for (int b = 0; b < batch; b++)
                for (int i = 0; i < w.Rows; i++) y[b * w.Rows + i] *= s[i];
    }

    // One thread's share: column groups [cg0, cg1), every row group.
    [MethodImpl(MethodImplOptions.AggressiveOptimization)] // kernels: skip tier-0 code
    private static void Part(PackedVqWeight w, float[] xp, int batch, int cg0, int cg1, bool exact, bool useSimd, float[] acc)
    {
        Array.Clear(acc, 0, batch * w.Rows);
        var scratch = LutScratch.Current;   // this worker's tables
        var table = LutScratch.Ensure(ref scratch.Table, ScratchSize(w));
        var q = LutScratch.Ensure(ref scratch.Quantized, table.Length);
        var scales = LutScratch.Ensure(ref scratch.Scales, LookupTables.Groups(w.Positions));
        var max = LutScratch.Ensure(ref scratch.Max, scales.Length);
        bool simd = useSimd && Avx2.IsSupported;
        fixed (float* y = acc, t = table, s = scales, m = max, xs = xp)
        fixed (sbyte* tq = q)
        fixed (byte* codes = w._codes)
            for (int cg = cg0; cg < cg1; cg++)
                for (int rg = 0; rg < w.RowGroups; rg++)
                {
                    int tile = rg * w.ColumnGroups + cg, stride = w._stride[tile];
                    byte* c = codes + w._codeOffset[tile];
                    for (int b = 0; b < batch; b++)
                    {
                        LookupTables.Build(w, tile, xs + b * w.Columns + cg * w.ColumnsPerGroup, t, m, simd);
                        float* yb = y + b * w.Rows + rg * w.RowsPerGroup;
                        if (exact) { FloatTile(w, tile, t, stride, yb); continue; }
                        LookupTables.Quantize(t, w.Positions, stride, m, tq, s, simd);
                        if (w._layout[tile] == TileCodes.Nibbles && simd) Avx2NibbleTile(c, tq, w.Positions, w.RowsPerGroup, s, yb);
                        else if (w._layout[tile] == TileCodes.Bytes && simd && w.ByteBlockRows == 8) Avx2ByteTile(c, tq, stride, w.Positions, w.RowsPerGroup, s, yb);
                        else if (w._layout[tile] == TileCodes.Bytes) ByteTile(c, tq, stride, w.Positions, w.RowsPerGroup, w.ByteBlockRows, s, yb);
                        else NibbleTile(c, tq, w.Positions, w.RowsPerGroup, s, yb);
                    }
                }
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)] // kernels: skip tier-0 code
    private static void FloatTile(PackedVqWeight w, int tile, float* table, int stride, float* y)
    {
        for (int r = 0; r < w.RowsPerGroup; r++)
        {
            float sum = 0;
            for (int p = 0; p < w.Positions; p++) sum += table[p * stride + w.Code(tile, r, p)];
            y[r] += sum;
        }
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)] // kernels: skip tier-0 code
    private static void ByteTile(byte* codes, sbyte* table, int stride, int positions, int rows, int block, float* scales, float* y)
    {
        const int G = LookupTables.PositionsPerScale;
        for (int r = 0; r < rows; r++)
        {
            byte* c = codes + (long)(r / block) * block * positions + r % block;
            float o = y[r];
            for (int p0 = 0, g = 0; p0 < positions; p0 += G, g++)
            {
                int s0 = 0, s1 = 0, p = p0, end = Math.Min(positions, p0 + G);
                for (; p + 2 <= end; p += 2)
                {
                    s0 += table[p * stride + c[p * block]];
                    s1 += table[(p + 1) * stride + c[(p + 1) * block]];
                }
                if (p < end) s0 += table[p * stride + c[p * block]];
                o += scales[g] * (s0 + s1);
            }
            y[r] = o;
        }
    }

    // 8 rows per step: their 8 byte indices at a position become 8 dword offsets into the int8 table, one gather
    // fetches the entries (4 bytes each; the scratch has 4 bytes of slack), and shifts sign-extend the low byte.
    [MethodImpl(MethodImplOptions.AggressiveOptimization)] // kernels: skip tier-0 code
    private static void Avx2ByteTile(byte* codes, sbyte* table, int stride, int positions, int rows, float* scales, float* y)
    {
        const int G = LookupTables.PositionsPerScale;
        for (int blk = 0; blk < rows / 8; blk++)
        {
            byte* c = codes + (long)blk * 8 * positions;
            var yv = Avx.LoadVector256(y + blk * 8);
            for (int p0 = 0, g = 0; p0 < positions; p0 += G, g++)
            {
                var acc = Vector256<int>.Zero;
                int end = Math.Min(positions, p0 + G);
                for (int p = p0; p < end; p++)
                {
                    var index = Avx2.Add(Avx2.ConvertToVector256Int32(c + p * 8), Vector256.Create(p * stride));
                    var entries = Avx2.GatherVector256((int*)table, index, 1);
                    acc = Avx2.Add(acc, Avx2.ShiftRightArithmetic(Avx2.ShiftLeftLogical(entries, 24), 24));
                }
                yv = Avx.Add(yv, Avx.Multiply(Vector256.Create(scales[g]), Avx.ConvertToVector256Single(acc)));
            }
            Avx.Store(y + blk * 8, yv);
        }
    }

    // Portable twin of the AVX2 path for CPUs without it (same layout, same sums).
    [MethodImpl(MethodImplOptions.AggressiveOptimization)] // kernels: skip tier-0 code
    private static void NibbleTile(byte* codes, sbyte* table, int positions, int rows, float* scales, float* y)
    {
        const int PairsPerScale = LookupTables.PositionsPerScale / 2;
        int pairs = positions / 2;
        for (int blk = 0; blk < rows / PackedVqWeight.BlockRows; blk++)
        {
            byte* c = codes + (long)blk * PackedVqWeight.BlockRows * pairs;
            for (int r = 0; r < PackedVqWeight.BlockRows; r++)
            {
                ref float o = ref y[blk * PackedVqWeight.BlockRows + r];
                for (int q0 = 0, g = 0; q0 < pairs; q0 += PairsPerScale, g++)
                {
                    int s = 0;
                    for (int qd = q0; qd < Math.Min(pairs, q0 + PairsPerScale); qd++)
                    {
                        byte b = c[qd * PackedVqWeight.BlockRows + r];
                        s += table[2 * qd * 16 + (b & 0x0F)] + table[(2 * qd + 1) * 16 + (b >> 4)];
                    }
                    o += scales[g] * s;
                }
            }
        }
    }

    // 32 rows per step: one 32-byte load holds two positions' indices; vpshufb looks each up in that position's
    // 16-entry table; interleaving the two results and vpmaddubsw with ones adds them into int16 lanes (at most
    // PositionsPerScale/2 · 254 per scale group, far from overflow).
    [MethodImpl(MethodImplOptions.AggressiveOptimization)] // kernels: skip tier-0 code
    private static void Avx2NibbleTile(byte* codes, sbyte* table, int positions, int rows, float* scales, float* y)
    {
        const int PairsPerScale = LookupTables.PositionsPerScale / 2;
        int pairs = positions / 2;
        var low = Vector256.Create((byte)0x0F);
        var ones = Vector256.Create((byte)1);
        for (int blk = 0; blk < rows / PackedVqWeight.BlockRows; blk++)
        {
            byte* c = codes + (long)blk * PackedVqWeight.BlockRows * pairs;
            float* yb = y + blk * PackedVqWeight.BlockRows;
            // Unpacking works per 128-bit lane: accLo holds rows 0–7 | 16–23, accHi rows 8–15 | 24–31.
            Vector256<float> y0 = Avx.LoadVector256(yb), y8 = Avx.LoadVector256(yb + 8),
                             y16 = Avx.LoadVector256(yb + 16), y24 = Avx.LoadVector256(yb + 24);
            for (int q0 = 0, g = 0; q0 < pairs; q0 += PairsPerScale, g++)
            {
                var accLo = Vector256<short>.Zero;
                var accHi = Vector256<short>.Zero;
                int q1 = Math.Min(pairs, q0 + PairsPerScale);
                for (int qd = q0; qd < q1; qd++)
                {
                    var v = Avx.LoadVector256(c + qd * PackedVqWeight.BlockRows);
                    var even = Avx2.And(v, low).AsSByte();
                    var odd = Avx2.And(Avx2.ShiftRightLogical(v.AsUInt16(), 4).AsByte(), low).AsSByte();
                    var a = Avx2.Shuffle(Avx2.BroadcastVector128ToVector256(table + 2 * qd * 16), even);
                    var b = Avx2.Shuffle(Avx2.BroadcastVector128ToVector256(table + (2 * qd + 1) * 16), odd);
                    accLo = Avx2.Add(accLo, Avx2.MultiplyAddAdjacent(ones, Avx2.UnpackLow(a, b)));
                    accHi = Avx2.Add(accHi, Avx2.MultiplyAddAdjacent(ones, Avx2.UnpackHigh(a, b)));
                }
                var s = Vector256.Create(scales[g]);
                y0 = Avx.Add(y0, Avx.Multiply(s, Float(accLo.GetLower())));
                y16 = Avx.Add(y16, Avx.Multiply(s, Float(accLo.GetUpper())));
                y8 = Avx.Add(y8, Avx.Multiply(s, Float(accHi.GetLower())));
                y24 = Avx.Add(y24, Avx.Multiply(s, Float(accHi.GetUpper())));
            }
            Avx.Store(yb, y0); Avx.Store(yb + 8, y8); Avx.Store(yb + 16, y16); Avx.Store(yb + 24, y24);
        }
    }

    private static Vector256<float> Float(Vector128<short> sums) => Avx.ConvertToVector256Single(Avx2.ConvertToVector256Int32(sums));
}
