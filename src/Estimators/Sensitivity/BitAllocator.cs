namespace Msavq.MLNet.Sensitivity;

/// <summary>A group that can take one of several tiers; each tier has a bit cost, and distortion falls with the tier.</summary>
public sealed record AllocationItem(double Score, double[] TierIndexBits, double[] TierCostBits);

/// <summary>
/// Greedy marginal-gain allocation under a total bit budget (algorithm.md §7.4): everyone starts at the lowest
/// tier; the upgrade with the largest Δdistortion/Δbits is taken while it fits, with the high-rate model
/// D(b) = s·2^(−2b). Ties break by item index, so the result is deterministic.
/// </summary>
public static class BitAllocator
{
    /// <returns>The tier index of every item.</returns>
    public static int[] Allocate(IReadOnlyList<AllocationItem> items, double budgetBits)
    {
        var tier = new int[items.Count];
        double spent = items.Sum(i => i.TierCostBits[0]);
        if (spent > budgetBits * (1 + 1e-12))
            throw new ArgumentException(
                $"No allocation meets the budget: even the lowest tier costs {spent:N0} bits, the budget is {budgetBits:N0}.");
        var queue = new PriorityQueue<int, (double Ratio, int Index)>(
            Comparer<(double Ratio, int Index)>.Create((a, b) => a.Ratio != b.Ratio ? b.Ratio.CompareTo(a.Ratio) : a.Index.CompareTo(b.Index)));
        void Push(int i)
        {
            var it = items[i];
            int t = tier[i];
            if (t + 1 >= it.TierCostBits.Length) return;
            double gain = it.Score * (Math.Pow(2, -2 * it.TierIndexBits[t]) - Math.Pow(2, -2 * it.TierIndexBits[t + 1]));
            double cost = it.TierCostBits[t + 1] - it.TierCostBits[t];
            queue.Enqueue(i, (cost > 0 ? gain / cost : double.PositiveInfinity, i));
        }
        for (int i = 0; i < items.Count; i++) Push(i);
        while (queue.TryDequeue(out int i, out _))
        {
            var it = items[i];
            double delta = it.TierCostBits[tier[i] + 1] - it.TierCostBits[tier[i]];
            if (spent + delta > budgetBits * (1 + 1e-12)) continue; // this upgrade no longer fits; cheaper ones may
            spent += delta;
            tier[i]++;
            Push(i);
        }
        return tier;
    }
}
