namespace Msavq.MLNet.Tests.Quantization;

/// <summary>
/// An independent transcription of the published GPTQ <c>fasterquant</c> (IST-DASLab/gptq, gptq.py + quant.py) on
/// plain double arrays, with its own Cholesky routines: the oracle our TorchSharp implementation must match code for code.
/// </summary>
internal static class GptqReference
{
    public static double[,] Codes(double[,] w0, double[,] h0, int bits, int blocksize, double percdamp, int groupsize,
                                  bool actorder, bool staticGroups)
    {
        int m = w0.GetLength(0), n = w0.GetLength(1), maxq = (1 << bits) - 1;
        var W = (double[,])w0.Clone();
        var H = (double[,])h0.Clone();
        var (scale, zero) = FindParams(W, 0, n, maxq); // quantizer.find_params(W) before dead handling
        for (int j = 0; j < n; j++)
            if (H[j, j] == 0) { H[j, j] = 1; for (int i = 0; i < m; i++) W[i, j] = 0; }
        var groups = new List<(double[] S, double[] Z)>();
        if (groupsize > 0 && staticGroups)
            for (int c = 0; c < n; c += groupsize) groups.Add(FindParams(W, c, Math.Min(c + groupsize, n), maxq));
        int[] perm = Enumerable.Range(0, n).ToArray();
        if (actorder)
        {
            perm = perm.OrderByDescending(j => H[j, j]).ThenBy(j => j).ToArray();
            W = PermuteCols(W, perm);
            var hp = new double[n, n];
            for (int a = 0; a < n; a++) for (int b = 0; b < n; b++) hp[a, b] = H[perm[a], perm[b]];
            H = hp;
        }
        double mean = 0; for (int j = 0; j < n; j++) mean += H[j, j]; mean /= n;
        for (int j = 0; j < n; j++) H[j, j] += percdamp * mean;
        var hinv = UpperCholeskyOfInverse(H);
        var Q = new double[m, n];
        for (int i1 = 0; i1 < n; i1 += blocksize)
        {
            int i2 = Math.Min(i1 + blocksize, n), count = i2 - i1;
            var W1 = new double[m, count];
            for (int r = 0; r < m; r++) for (int c = 0; c < count; c++) W1[r, c] = W[r, i1 + c];
            var Err1 = new double[m, count];
            for (int i = 0; i < count; i++)
            {
                double d = hinv[i1 + i, i1 + i];
                if (groupsize > 0)
                {
                    if (!staticGroups) { if ((i1 + i) % groupsize == 0) (scale, zero) = FindParams(W, i1 + i, Math.Min(i1 + i + groupsize, n), maxq); }
                    else (scale, zero) = groups[perm[i1 + i] / groupsize];
                }
                for (int r = 0; r < m; r++)
                {
                    double w = W1[r, i];
                    double code = Math.Clamp(Math.Round(w / scale[r], MidpointRounding.ToEven) + zero[r], 0, maxq);
                    double q = scale[r] * (code - zero[r]);
                    Q[r, i1 + i] = code;
                    double err = (w - q) / d;
                    for (int c = i; c < count; c++) W1[r, c] -= err * hinv[i1 + i, i1 + c];
                    Err1[r, i] = err;
                }
            }
            for (int r = 0; r < m; r++)
                for (int c = i2; c < n; c++)
                {
                    double s = 0;
                    for (int k = 0; k < count; k++) s += Err1[r, k] * hinv[i1 + k, c];
                    W[r, c] -= s;
                }
        }
        if (actorder)
        {
            var un = new double[m, n];
            for (int r = 0; r < m; r++) for (int j = 0; j < n; j++) un[r, perm[j]] = Q[r, j];
            Q = un;
        }
        return Q;
    }

    private static (double[] Scale, double[] Zero) FindParams(double[,] x, int c0, int c1, int maxq)
    {
        int m = x.GetLength(0);
        var s = new double[m]; var z = new double[m];
        for (int r = 0; r < m; r++)
        {
            double mn = 0, mx = 0;
            for (int c = c0; c < c1; c++) { mn = Math.Min(mn, x[r, c]); mx = Math.Max(mx, x[r, c]); }
            if (mn == 0 && mx == 0) { mn = -1; mx = 1; }
            s[r] = (mx - mn) / maxq;
            z[r] = Math.Round(-mn / s[r], MidpointRounding.ToEven);
        }
        return (s, z);
    }

    private static double[,] PermuteCols(double[,] w, int[] perm)
    {
        int m = w.GetLength(0), n = w.GetLength(1);
        var r = new double[m, n];
        for (int i = 0; i < m; i++) for (int j = 0; j < n; j++) r[i, j] = w[i, perm[j]];
        return r;
    }

    /// <summary>chol(H) → cholesky_inverse → upper chol, as the reference.</summary>
    private static double[,] UpperCholeskyOfInverse(double[,] h)
    {
        int n = h.GetLength(0);
        var l = Cholesky(h);
        // H⁻¹ = L⁻ᵀ L⁻¹ from the triangular inverse of L.
        var li = new double[n, n];
        for (int j = 0; j < n; j++)
        {
            li[j, j] = 1 / l[j, j];
            for (int i = j + 1; i < n; i++)
            {
                double s = 0;
                for (int k = j; k < i; k++) s -= l[i, k] * li[k, j];
                li[i, j] = s / l[i, i];
            }
        }
        var inv = new double[n, n];
        for (int i = 0; i < n; i++)
            for (int j = 0; j < n; j++)
            {
                double s = 0;
                for (int k = Math.Max(i, j); k < n; k++) s += li[k, i] * li[k, j];
                inv[i, j] = s;
            }
        var l2 = Cholesky(inv);
        var u = new double[n, n];
        for (int i = 0; i < n; i++) for (int j = 0; j < n; j++) u[i, j] = l2[j, i];
        return u;
    }

    private static double[,] Cholesky(double[,] a)
    {
        int n = a.GetLength(0);
        var l = new double[n, n];
        for (int j = 0; j < n; j++)
        {
            double s = a[j, j];
            for (int k = 0; k < j; k++) s -= l[j, k] * l[j, k];
            if (s <= 0) throw new InvalidOperationException("not positive definite");
            l[j, j] = Math.Sqrt(s);
            for (int i = j + 1; i < n; i++)
            {
                double t = a[i, j];
                for (int k = 0; k < j; k++) t -= l[i, k] * l[j, k];
                l[i, j] = t / l[j, j];
            }
        }
        return l;
    }
}
