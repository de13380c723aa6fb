using Microsoft.ML.Data;

namespace Msavq.Bench.Curves;

/// <summary>A calibration row of an image-only IDataView: an encoded image file or raw RGB bytes.</summary>
internal sealed class ImageRow
{
    [VectorType]
    public byte[] Image { get; set; } = [];
}
