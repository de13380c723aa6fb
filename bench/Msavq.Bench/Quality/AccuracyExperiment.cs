using Msavq.MLNet;

namespace Msavq.Bench.Quality;

/// <summary>One row of the accuracy table: a method at a budget, with its ablation switches.</summary>
/// <param name="PlainMinMaxGrid">
/// RTN on <see cref="Msavq.MLNet.Quantization.RoundToNearest.DequantizePlainMinMax"/>'s grid, applied to the weights
/// directly (not through the estimator chain: a .msavq file does not store that grid).
/// </param>
public sealed record AccuracyExperiment(string Name, QuantizationMethod Method, double Budget, bool MixedPrecision = true,
                                        bool GradientShift = Defaults.GradientShift, bool ModalityWeighting = true,
                                        bool PlainMinMaxGrid = false)
{
    /// <summary>The table of issue 4: four methods at three budgets, and MSAVQ's ablations at the middle budget.</summary>
    public static IReadOnlyList<AccuracyExperiment> Standard(IReadOnlyList<double> budgets, double ablationBudget)
    {
        var list = Methods(budgets);
        list.Add(new AccuracyExperiment("MSAVQ − mixed precision", QuantizationMethod.Msavq, ablationBudget, MixedPrecision: false));
        list.Add(new AccuracyExperiment(Defaults.GradientShift ? "MSAVQ − gradient term" : "MSAVQ + gradient term",
            QuantizationMethod.Msavq, ablationBudget, GradientShift: !Defaults.GradientShift));
        list.Add(new AccuracyExperiment("MSAVQ − modality weighting", QuantizationMethod.Msavq, ablationBudget, ModalityWeighting: false));
        return list;
    }

    /// <summary>RTN, GPTQ, GPTVQ and MSAVQ at each budget.</summary>
    public static List<AccuracyExperiment> Methods(IReadOnlyList<double> budgets) =>
        budgets.SelectMany(b => new[] { QuantizationMethod.Rtn, QuantizationMethod.Gptq, QuantizationMethod.Gptvq, QuantizationMethod.Msavq }
            .Select(m => new AccuracyExperiment(m.ToString().ToUpperInvariant(), m, b))).ToList();

    /// <summary>
    /// The MiniLM table of issue 7: first the harness check, round-to-nearest at 2 bits in groups of 64 on the plain
    /// min–max grid (fp16 scale and offset per group: 2 + 32/64 bits) and on our zero-point grid (the budget 2 + 18/64
    /// is exactly what the scalar fit needs for 2-bit codes with an fp16 scale and a 2-bit zero per 64 columns), then
    /// the four methods at each budget, and MSAVQ with its gradient term toggled at the first budget.
    /// </summary>
    public static IReadOnlyList<AccuracyExperiment> MiniLm(IReadOnlyList<double> budgets)
    {
        var list = new List<AccuracyExperiment>
        {
            new("RTN 2-bit g64, plain min–max grid (harness check)", QuantizationMethod.Rtn, PlainBitsPerWeight, PlainMinMaxGrid: true),
            new("RTN 2-bit g64, zero-point grid", QuantizationMethod.Rtn, 2 + 18.0 / 64),
        };
        list.AddRange(Methods(budgets));
        list.Add(new AccuracyExperiment(Defaults.GradientShift ? "MSAVQ − gradient term" : "MSAVQ + gradient term",
            QuantizationMethod.Msavq, budgets[0], GradientShift: !Defaults.GradientShift));
        return list;
    }

    /// <summary>Columns per group of the plain-grid harness check.</summary>
    public const int PlainGroupSize = 64;

    /// <summary>Its all-in cost: 2-bit codes plus an fp16 scale and an fp16 offset per group.</summary>
    public const double PlainBitsPerWeight = 2 + 32.0 / PlainGroupSize;
}

/// <summary>What one experiment measured on the test split.</summary>
public sealed record AccuracyResult(
    AccuracyExperiment Experiment, double BitsPerWeight, double QuantizedKiB, double Accuracy,
    IReadOnlyDictionary<string, double> FamilyAccuracy, double Agreement, double MeanKl, double AnswerNll, double Seconds,
    string? Error = null);
