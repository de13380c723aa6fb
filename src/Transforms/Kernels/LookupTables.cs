using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;

namespace Msavq.MLNet.Kernels;

/// <summary>
/// The look-up tables of one tile: T[p, k] = c_k · x_p, the dot product of codeword k with the activation's
/// d-vector at position p. A row's share of the product is then Σ_p T[p, code(row, p)] — one table look-up per
/// d weights instead of d multiply-adds, and the weight matrix is never decoded. Tables are rounded to int8 with
/// one scale per <see cref="PositionsPerScale"/> positions, so integer sums inside a group share one unit.
/// Building them is per-tile work the look-ups must amortize, so it is vectorized too; the scalar and vector
/// paths give identical tables (same products, no fused multiply-add, round half to even in both).
/// </summary>
internal static unsafe class LookupTables
{
    /// <summary>Positions that share one int8 scale: few, so an outlier channel costs precision only in its group.</summary>
    public const int PositionsPerScale = 8;

    /// <summary>Scale groups of a tile.</summary>
    public static int Groups(int positions) => (positions + PositionsPerScale - 1) / PositionsPerScale;

    /// <summary>
    /// Fills <paramref name="table"/> [positions × stride] for <paramref name="tile"/> from the permuted activation
    /// slice <paramref name="x"/> (the tile's C columns), and the max |T| of each scale group into <paramref name="groupMax"/>.
    /// Padded entries (k ≥ K) come out 0 because the codebook is zero-padded.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)] // kernels: skip tier-0 code
    public static void Build(PackedVqWeight w, int tile, float* x, float* table, float* groupMax, bool simd)
    {
        int s = w._stride[tile], d = w.D, positions = w.Positions;
        fixed (float* book = &w._codebooks[w._codebookOffset[tile]])
            if (simd && Avx.IsSupported)
            {
                // The group's max stays in a register; one horizontal reduction per group.
                var m = Vector256<float>.Zero;
                for (int p = 0; p < positions; p++)
                {
                    float* row = table + p * s, xp = x + p * d;
                    for (int i = 0; i < s; i += 8)
                    {
                        var acc = Avx.Multiply(Avx.LoadVector256(book + i), Vector256.Create(xp[0]));
                        for (int e = 1; e < d; e++) acc = Avx.Add(acc, Avx.Multiply(Avx.LoadVector256(book + e * s + i), Vector256.Create(xp[e])));
                        Avx.Store(row + i, acc);
                        m = Avx.Max(m, Vector256.Abs(acc));
                    }
                    if ((p + 1) % PositionsPerScale == 0 || p == positions - 1)
                    {
                        var h = Sse.Max(m.GetLower(), m.GetUpper());
                        h = Sse.Max(h, Sse.MoveHighToLow(h, h));
                        groupMax[p / PositionsPerScale] = MathF.Max(h.GetElement(0), h.GetElement(1));
                        m = Vector256<float>.Zero;
                    }
                }
            }
            else
                for (int p = 0; p < positions; p++)
                {
                    float* row = table + p * s, xp = x + p * d;
                    if (p % PositionsPerScale == 0) groupMax[p / PositionsPerScale] = 0;
                    ref float g = ref groupMax[p / PositionsPerScale];
                    for (int i = 0; i < s; i++)
                    {
                        float acc = book[i] * xp[0];
                        for (int e = 1; e < d; e++) acc += book[e * s + i] * xp[e];
                        row[i] = acc;
                        g = MathF.Max(g, MathF.Abs(acc));
                    }
                }
    }

    /// <summary>
    /// Rounds the table to int8, one scale (group max / 127) per group, written to <paramref name="scales"/>.
    /// Inputs must be finite (the kernel screens activations first).
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)] // kernels: skip tier-0 code
    public static void Quantize(float* table, int positions, int stride, float* groupMax, sbyte* q, float* scales, bool simd)
    {
        for (int g = 0; g * PositionsPerScale < positions; g++)
        {
            float max = groupMax[g];
            int start = g * PositionsPerScale * stride, end = Math.Min(positions, (g + 1) * PositionsPerScale) * stride;
            scales[g] = max / 127f;
            float inverse = max == 0 ? 0 : 127f / max;
            int i = start;
            if (simd && Avx2.IsSupported)
            {
                var v = Vector256.Create(inverse);
                // |T|·127/max ≤ 127, so narrowing int32 → int16 → int8 cannot wrap.
                for (; i + 16 <= end; i += 16)
                {
                    var lo = Avx.ConvertToVector256Int32(Avx.Multiply(Avx.LoadVector256(table + i), v));
                    var hi = Avx.ConvertToVector256Int32(Avx.Multiply(Avx.LoadVector256(table + i + 8), v));
                    var shorts = Vector256.Narrow(lo, hi);
                    Vector128.Narrow(shorts.GetLower(), shorts.GetUpper()).Store(q + i);
                }
            }
            for (; i < end; i++) q[i] = (sbyte)MathF.Round(table[i] * inverse, MidpointRounding.ToEven);
        }
    }
}
