using Msavq.MLNet;

namespace Msavq.Cli.Bench;

/// <summary>One row of the accuracy table: a method at a budget, with its ablation switches.</summary>
public sealed record AccuracyExperiment(string Name, QuantizationMethod Method, double Budget, bool MixedPrecision = true,
                                        bool GradientShift = Defaults.GradientShift, bool ModalityWeighting = true)
{
    /// <summary>The table of issue 4: four methods at three budgets, and MSAVQ's ablations at the middle budget.</summary>
    public static IReadOnlyList<AccuracyExperiment> Standard(IReadOnlyList<double> budgets, double ablationBudget)
    {
        var list = new List<AccuracyExperiment>();
        foreach (double b in budgets)
            foreach (var m in new[] { QuantizationMethod.Rtn, QuantizationMethod.Gptq, QuantizationMethod.Gptvq, QuantizationMethod.Msavq })
                list.Add(new AccuracyExperiment(m.ToString().ToUpperInvariant(), m, b));
        list.Add(new AccuracyExperiment("MSAVQ − mixed precision", QuantizationMethod.Msavq, ablationBudget, MixedPrecision: false));
        list.Add(new AccuracyExperiment(Defaults.GradientShift ? "MSAVQ − gradient term" : "MSAVQ + gradient term",
            QuantizationMethod.Msavq, ablationBudget, GradientShift: !Defaults.GradientShift));
        list.Add(new AccuracyExperiment("MSAVQ − modality weighting", QuantizationMethod.Msavq, ablationBudget, ModalityWeighting: false));
        return list;
    }
}

/// <summary>What one experiment measured on the test split.</summary>
public sealed record AccuracyResult(
    AccuracyExperiment Experiment, double BitsPerWeight, double QuantizedKiB, double Accuracy,
    IReadOnlyDictionary<string, double> FamilyAccuracy, double Agreement, double MeanKl, double AnswerNll, double Seconds,
    string? Error = null);
