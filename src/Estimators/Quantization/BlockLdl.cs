using static TorchSharp.torch;

namespace Msavq.MLNet.Quantization;

/// <summary>
/// A = L D Lᵀ with L unit block-lower-triangular (identity d×d diagonal blocks) and D block-diagonal, kept as its d×d
/// diagonal blocks D_k, [n/d, d, d].
/// </summary>
public sealed record BlockLdlFactors(Tensor L, Tensor D, int BlockSize)
{
    /// <summary>D as a dense n×n block-diagonal matrix (for tests and small problems).</summary>
    public Tensor DenseD()
    {
        long nb = D.shape[0], d = D.shape[1], n = nb * d;
        var dense = zeros(n, n, D.dtype, D.device);
        for (long k = 0; k < nb; k++) dense[(int)(k * d)..(int)((k + 1) * d), (int)(k * d)..(int)((k + 1) * d)] = D[k];
        return dense;
    }
}

/// <summary>Block LDL via Cholesky (QuIP#, algorithm.md §5.1), float64.</summary>
public static class BlockLdl
{
    /// <param name="lowerCholesky">Lower Cholesky factor L_c of A (from <see cref="HessianFactor.Cholesky"/>).</param>
    public static BlockLdlFactors FromCholesky(Tensor lowerCholesky, int d)
    {
        long n = lowerCholesky.shape[0];
        if (n % d != 0) throw new ArgumentException($"n = {n} is not a multiple of the block size {d}.");
        long nb = n / d;
        using var scope = NewDisposeScope();
        var lc = lowerCholesky.to(ScalarType.Float64);
        // Diagonal blocks L_k of L_c: [nb, d, d].
        var blocks = lc.reshape(nb, d, nb, d).diagonal(0, 0, 2).permute(2, 0, 1).contiguous();
        var dk = blocks.matmul(blocks.transpose(1, 2));                                   // D_k = L_k L_kᵀ
        var eyeD = eye(d, dtype: ScalarType.Float64, device: lc.device).expand(nb, d, d);
        var inv = linalg.solve_triangular(blocks, eyeD, upper: false);                    // L_k⁻¹
        // L[:, block k] = L_c[:, block k] · L_k⁻¹, done per block column (n²·d flops, not n³).
        var l = lc.reshape(n, nb, d).unsqueeze(2).matmul(inv.unsqueeze(0)).squeeze(2).reshape(n, n);
        // Exact identities on the diagonal blocks (they are I up to rounding).
        var ld = l.reshape(nb, d, nb, d);
        for (long k = 0; k < nb; k++) ld[(int)k, .., (int)k, ..] = eye(d, dtype: ScalarType.Float64, device: lc.device);
        return new BlockLdlFactors(ld.reshape(n, n).MoveToOuterDisposeScope(), dk.MoveToOuterDisposeScope(), d);
    }
}
