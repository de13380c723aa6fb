using Microsoft.ML.Data;

namespace Msavq.MLNet.Tests.Models;

/// <summary>A calibration row of an image-only IDataView: an encoded image file or raw RGB bytes.</summary>
internal sealed class ImageRow
{
    [VectorType]
    public byte[] Image { get; set; } = [];
}
