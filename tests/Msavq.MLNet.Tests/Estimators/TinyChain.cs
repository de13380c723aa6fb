using Microsoft.ML;
using Microsoft.ML.Data;
using Msavq.MLNet.Calibration;
using Msavq.MLNet.Data;
using Msavq.MLNet.Models;
using Msavq.MLNet.Sensitivity;
using Msavq.MLNet.Tests.Models;

namespace Msavq.MLNet.Tests.Estimators;

/// <summary>The chain on the tiny VLM, for fast tests.</summary>
internal static class TinyChain
{
    public static IDataView Calibration(MLContext ml, int rows = 24) => ShapesVqa.Generate(ml, rows, seed: 1);

    public static TransformerChain<MixedPrecisionVqTransformer> Fit(MLContext ml, QuantizationMethod method, double bits,
        IQuantizableModel? model = null, CalibrationMode mode = CalibrationMode.Sequential, int seed = 0,
        Action<SensitivityEstimator.Options>? sensitivity = null, Action<MixedPrecisionVqEstimator.Options>? quantize = null)
    {
        var s = new SensitivityEstimator.Options { TargetBitsPerWeight = bits, Method = method, WeightsPerCodebook = 256 };
        sensitivity?.Invoke(s);
        var q = new MixedPrecisionVqEstimator.Options { Seed = seed, KMeansIterations = 20, FineTuneSteps = 0 };
        quantize?.Invoke(q);
        return ml.Msavq().CollectCalibration(new CalibrationCollector.Options
            {
                Model = model ?? TinyVlm.Create(), BatchSize = 8, Mode = mode,
                Roles = new[] { LayerRole.Language, LayerRole.Projector },
            })
            .Append(ml.Msavq().EstimateSensitivity(s))
            .Append(ml.Msavq().QuantizeMixedPrecisionVq(q))
            .Fit(Calibration(ml));
    }
}
