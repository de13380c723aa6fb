namespace Msavq.MLNet.Sensitivity;

/// <summary>
/// A group that can take one of several tiers, sorted by bit cost. Distortion falls with the tier: given per tier
/// (<see cref="TierDistortion"/>, e.g. a measured trial error) or by the high-rate model D(b) = s·2^(−2b).
/// </summary>
public sealed record AllocationItem(double Score, double[] TierIndexBits, double[] TierCostBits)
{
    /// <summary>Distortion per tier; null for the high-rate model <see cref="Score"/>·2^(−2·<see cref="TierIndexBits"/>).</summary>
    public double[]? TierDistortion { get; init; }

    internal double Distortion(int tier) => TierDistortion?[tier] ?? Score * Math.Pow(2, -2 * TierIndexBits[tier]);
}

/// <summary>
/// Greedy marginal-gain allocation under a total bit budget (algorithm.md §7.4): everyone starts at the lowest tier;
/// the upgrade with the largest Δdistortion/Δbits is taken while it fits. An upgrade may skip tiers (the next point
/// of the item's lower convex hull), so tiers whose distortion does not pay for their bits are passed over; when the
/// best upgrade no longer fits, the best one that does is tried. Ties break by item index: deterministic.
/// </summary>
public static class BitAllocator
{
    /// <returns>The tier index of every item.</returns>
    public static int[] Allocate(IReadOnlyList<AllocationItem> items, double budgetBits)
    {
        var tier = new int[items.Count];
        double spent = items.Sum(i => i.TierCostBits[0]);
        double limit = budgetBits * (1 + 1e-12);
        if (spent > limit)
            throw new ArgumentException(
                $"No allocation meets the budget: even the lowest tier costs {spent:N0} bits, the budget is {budgetBits:N0}.");
        var queue = new PriorityQueue<(int Item, int To), (double Ratio, int Index)>(
            Comparer<(double Ratio, int Index)>.Create((a, b) => a.Ratio != b.Ratio ? b.Ratio.CompareTo(a.Ratio) : a.Index.CompareTo(b.Index)));
        void Push(int i)
        {
            var (to, ratio) = BestUpgrade(items[i], tier[i], limit - spent);
            if (to >= 0) queue.Enqueue((i, to), (ratio, i));
        }
        for (int i = 0; i < items.Count; i++) Push(i);
        while (queue.TryDequeue(out var next, out _))
        {
            var (i, to) = next;
            var it = items[i];
            double delta = it.TierCostBits[to] - it.TierCostBits[tier[i]];
            if (spent + delta > limit) { Push(i); continue; }   // spending moved on: the best upgrade that still fits
            spent += delta;
            tier[i] = to;
            Push(i);
        }
        return tier;
    }

    /// <summary>From <paramref name="from"/>, the higher tier with the largest distortion drop per bit that costs at most <paramref name="room"/> more.</summary>
    private static (int To, double Ratio) BestUpgrade(AllocationItem it, int from, double room)
    {
        int best = -1;
        double bestRatio = double.NegativeInfinity, d0 = it.Distortion(from), c0 = it.TierCostBits[from];
        for (int t = from + 1; t < it.TierCostBits.Length; t++)
        {
            double cost = it.TierCostBits[t] - c0, gain = d0 - it.Distortion(t);
            if (cost > room || gain <= 0) continue;
            double ratio = cost > 0 ? gain / cost : double.PositiveInfinity;
            if (ratio > bestRatio) { bestRatio = ratio; best = t; }
        }
        return (best, bestRatio);
    }
}
