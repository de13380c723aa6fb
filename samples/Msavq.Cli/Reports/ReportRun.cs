using Msavq.MLNet;
using Msavq.MLNet.Sensitivity;

namespace Msavq.Cli.Reports;

/// <summary>
/// One finished run of the report: a method at a budget, what it measured on the test questions against the FP model,
/// or why it could not run (<see cref="Error"/>: the method cannot meet the budget).
/// </summary>
public sealed record ReportRun(QuantizationMethod Method, double Budget, double Seconds)
{
    /// <summary>The chain's reason when the method cannot meet the budget; null when it ran.</summary>
    public string? Error { get; init; }

    public IReadOnlyList<QuantizedLayerReport> Layers { get; init; } = [];

    /// <summary>MSAVQ's allocation (the other methods have no per-tile plan worth drawing).</summary>
    public BitAllocationPlan? Plan { get; init; }

    public double BitsPerWeight { get; init; } = double.NaN;
    public double Accuracy { get; init; } = double.NaN;
    public double Agreement { get; init; } = double.NaN;
    public double MeanKl { get; init; } = double.NaN;
    public double AnswerNll { get; init; } = double.NaN;

    public bool Ran => Error is null;

    /// <summary>The method as the tables and plots name it.</summary>
    public string Name => NameOf(Method);

    public static string NameOf(QuantizationMethod method) => method.ToString().ToUpperInvariant();
}
