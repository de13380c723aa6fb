using static TorchSharp.torch;

namespace Msavq.MLNet.Models;

/// <summary>Which column of a row a <see cref="IFeatureModel"/> reads.</summary>
public enum FeatureSource { Text, Image }

/// <summary>
/// A model that maps each row to one vector of floats — a sentence encoder's embedding, an image featurizer's
/// features, or an ONNX model's output flattened per row — which the scoring transformer adds as a column
/// (<c>MixedPrecisionVqEstimator.Options.FeatureColumnName</c>), as ML.NET's <c>ApplyOnnxModel</c> adds a graph's outputs.
/// </summary>
public interface IFeatureModel : IQuantizableModel
{
    /// <summary>Whether a row's text or its image is read.</summary>
    FeatureSource Source { get; }

    /// <summary>The length of every row's vector (read from the model, e.g. the hidden size or the output's size).</summary>
    int FeatureLength { get; }

    /// <summary>The vectors [rows, <see cref="FeatureLength"/>] of <paramref name="rows"/>, float32, on <see cref="IQuantizableModel.Device"/>.</summary>
    Tensor Features(IReadOnlyList<ModelRow> rows);
}
