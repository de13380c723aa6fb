using Microsoft.ML;
using Microsoft.ML.Data;
using Msavq.MLNet;
using Msavq.MLNet.Calibration;
using Msavq.MLNet.Sensitivity;
using Spectre.Console;

namespace Msavq.Cli.Commands;

/// <summary>
/// The calibrate and quantize bars of one chain fit, driven by the chain's own progress reports; a cancelled token
/// stops the fit at its next report (every file is written atomically, so nothing half-written is left).
/// </summary>
internal sealed class ChainProgress
{
    private readonly ProgressTask _calibrate, _quantize;

    public ChainProgress(ProgressContext ctx, CancellationToken cancellation)
    {
        _calibrate = ctx.AddTask("calibrate", maxValue: 1);
        _quantize = ctx.AddTask("quantize", maxValue: 1);
        Reporter = new ImmediateProgress<QuantizationProgress>(p =>
        {
            cancellation.ThrowIfCancellationRequested();
            var task = p.Stage == "quantize" ? _quantize : _calibrate;
            task.MaxValue = p.Count;
            task.Value = p.Stage == "quantize" ? p.Index - 1 : p.Index;
            task.Description = p.Layer is null ? p.Stage : $"quantize {Markup.Escape(p.Layer)}";
        });
    }

    public IProgress<QuantizationProgress> Reporter { get; }

    /// <summary>The chain both quantize paths fit: calibration, the sensitivity plan for the settings' method and budget, the quantizer.</summary>
    public EstimatorChain<MixedPrecisionVqTransformer> Chain(MLContext ml, CalibrationCollector.Options calibration,
                                                             QuantizeCommand.Settings s, bool scoreRows, string? featureColumn = null)
    {
        calibration.Progress = Reporter;
        return ml.Msavq().CollectCalibration(calibration)
            .Append(ml.Msavq().EstimateSensitivity(new SensitivityEstimator.Options
            {
                TargetBitsPerWeight = s.Budget, Method = s.Method, VectorDimension = s.VectorDimension,
            }))
            .Append(ml.Msavq().QuantizeMixedPrecisionVq(new MixedPrecisionVqEstimator.Options
            {
                Seed = s.Seed, Progress = Reporter, ScoreRows = scoreRows, FeatureColumnName = featureColumn,
            }));
    }

    /// <summary>Both bars full once the fit returns (the last layer's report comes before its work).</summary>
    public void Done()
    {
        _calibrate.Value = _calibrate.MaxValue;
        _quantize.Value = _quantize.MaxValue;
        _quantize.Description = "quantize";
    }
}
