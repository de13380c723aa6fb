using Msavq.MLNet.Models;
using Msavq.MLNet.Models.Onnx;
using TorchSharp;
using static TorchSharp.torch;
using DataType = Onnx.TensorProto.Types.DataType;
using G = Msavq.MLNet.Tests.Models.OnnxGraphBuilder;

namespace Msavq.MLNet.Tests.Models;

/// <summary>Image models from ONNX on a tiny conv net: what is read from the graph, the pixel transform, the calibration batch, and the errors.</summary>
[TestClass]
public sealed class OnnxImageModelTests
{
    /// <summary>A conv (3→4, 3×3, stride 2) + ReLU + global average pool on [N, 3, 8, 6] images; a second output when asked.</summary>
    internal static byte[] TinyConvNet(bool twoOutputs = false, bool symbolicSize = false, string input = "pixels")
    {
        var g = new G(13);
        var x = symbolicSize ? g.Input(input, DataType.Float, -1, 3, -1, -1) : g.Input(input, DataType.Float, -1, 3, 8, 6);
        var w = g.Initializer("stem.weight", Enumerable.Range(0, 4 * 3 * 3 * 3).Select(i => (float)Math.Cos(i)).ToArray(), 4, 3, 3, 3);
        var c = g.Node("Conv", new[] { x, w, g.Initializer("stem.bias", new[] { 0.1f, -0.2f, 0.3f, 0f }, 4) }, null, G.Ints("strides", 2, 2), G.Ints("pads", 1, 1, 1, 1));
        var r = g.Node("Relu", new[] { c });
        g.Output(g.Node("GlobalAveragePool", new[] { r }, "features"));
        if (twoOutputs) g.Output(r);
        return g.Bytes();
    }

    private static byte[] Raw(int seed, int height = 8, int width = 6)
    {
        var rng = new Random(seed);
        var b = new byte[height * width * 3];
        rng.NextBytes(b);
        return b;
    }

    [TestMethod]
    public void Load_ReadsInputOutputAndSize_AndTheConvIsALayer()
    {
        using var model = OnnxModel.Load(TinyConvNet(), new OnnxImageOptions());
        Assert.AreEqual("pixels", model.Image!.InputName);
        Assert.AreEqual("features", model.Image.OutputName);
        Assert.AreEqual(8, model.Image.Height);
        Assert.AreEqual(6, model.Image.Width);
        Assert.IsNull(model.Text);
        var layer = model.QuantizableLayers.Single();
        Assert.AreEqual("stem", layer.Name);
        Assert.AreEqual(LayerRole.Vision, layer.Role);
        Assert.AreEqual(27L, layer.Module.in_features);
    }

    [TestMethod]
    public void PixelTransform_IsScaleMeanStd_InTheChannelOrder()
    {
        var options = new OnnxImageOptions { ChannelOrder = ImageChannelOrder.Bgr, Scale = 1f / 255, Mean = [0.5f, 0.25f, 0f], Std = [0.5f, 2f, 1f] };
        using var model = OnnxModel.Load(TinyConvNet(), options);
        var rgb = Raw(3);
        using var pixels = OnnxImages.ToTensor(new[] { rgb }, model.Image!, CPU);
        CollectionAssert.AreEqual(new long[] { 1, 3, 8, 6 }, pixels.shape);
        int p = 5 * 6 + 4;   // row 5, column 4
        // Graph channel 0 is blue (BGR): (b/255 − 0.5)/0.5.
        Assert.AreEqual((rgb[p * 3 + 2] / 255f - 0.5f) / 0.5f, pixels[0, 0, 5, 4].item<float>(), 1e-6);
        Assert.AreEqual((rgb[p * 3 + 1] / 255f - 0.25f) / 2f, pixels[0, 1, 5, 4].item<float>(), 1e-6);
        Assert.AreEqual(rgb[p * 3] / 255f, pixels[0, 2, 5, 4].item<float>(), 1e-6);
    }

    [TestMethod]
    public void Encode_PairsEachImageWithItsMirror_AllImagePositions()
    {
        using var model = OnnxModel.Load(TinyConvNet(), new OnnxImageOptions());
        using var batch = (ImageBatch)model.Encode(new[] { new ModelRow(Raw(1), ""), new ModelRow(Raw(2), "") });
        CollectionAssert.AreEqual(new long[] { 1, 0, 3, 2 }, batch.Labels.reshape(-1).data<long>().ToArray());
        using var image = ((int)TokenModality.Image).ToScalar();
        Assert.IsTrue(batch.Modality.eq(image).all().item<bool>());
        CollectionAssert.AreEqual(new long[] { 4, 3, 8, 6 }, batch.Pixels.shape);
        Assert.IsTrue(batch.Pixels[1].eq(batch.Pixels[0].flip(2)).all().item<bool>(), "view 1 is view 0 mirrored left to right");
        using var logits = model.Logits(batch);
        CollectionAssert.AreEqual(new long[] { 4, 1, 4 }, logits.shape);
    }

    [TestMethod]
    public void EncodedAndRawImages_GiveTheSameFeatures()
    {
        using var model = OnnxModel.Load(TinyConvNet(), new OnnxImageOptions());
        var rgb = Raw(9);
        using var bitmap = new SkiaSharp.SKBitmap(new SkiaSharp.SKImageInfo(6, 8, SkiaSharp.SKColorType.Rgba8888, SkiaSharp.SKAlphaType.Unpremul));
        for (int y = 0; y < 8; y++)
            for (int x = 0; x < 6; x++)
            {
                int p = (y * 6 + x) * 3;
                bitmap.SetPixel(x, y, new SkiaSharp.SKColor(rgb[p], rgb[p + 1], rgb[p + 2]));
            }
        using var encoded = SkiaSharp.SKImage.FromBitmap(bitmap);
        using var png = encoded.Encode(SkiaSharp.SKEncodedImageFormat.Png, 100);
        using var scope = NewDisposeScope();
        var features = model.EmbedImages(new[] { rgb, png.ToArray() });
        CollectionAssert.AreEqual(new long[] { 2, 4 }, features.shape);
        Assert.IsTrue(features[0].eq(features[1]).all().item<bool>(), "a PNG of the same pixels at the model's size is the same input");
    }

    [TestMethod]
    public void Errors_NameWhatToSet()
    {
        var two = Assert.ThrowsExactly<ArgumentException>(() => OnnxModel.Load(TinyConvNet(twoOutputs: true), new OnnxImageOptions()));
        StringAssert.Contains(two.Message, nameof(OnnxImageOptions.OutputName));

        var size = Assert.ThrowsExactly<ArgumentException>(() => OnnxModel.Load(TinyConvNet(symbolicSize: true), new OnnxImageOptions()));
        StringAssert.Contains(size.Message, "OnnxImageOptions.Height");
        using (var sized = OnnxModel.Load(TinyConvNet(symbolicSize: true), new OnnxImageOptions { Height = 10, Width = 12 }))
            Assert.AreEqual(12, sized.Image!.Width);

        var input = Assert.ThrowsExactly<ArgumentException>(() => OnnxModel.Load(TinyConvNet(), new OnnxImageOptions { InputName = "image" }));
        StringAssert.Contains(input.Message, "'pixels'");

        var std = Assert.ThrowsExactly<ArgumentException>(() => OnnxModel.Load(TinyConvNet(), new OnnxImageOptions { Std = [1f, 0f, 1f] }));
        StringAssert.Contains(std.Message, nameof(OnnxImageOptions.Std));

        using var model = OnnxModel.Load(TinyConvNet(), new OnnxImageOptions());
        StringAssert.Contains(((IQuantizableModel)model).RowProblem(new ModelRow([1, 2, 3], "")), "neither an image file");
        Assert.IsNull(((IQuantizableModel)model).RowProblem(new ModelRow(Raw(1), "")));
        var text = Assert.ThrowsExactly<InvalidOperationException>(() => model.Embed(new[] { "a sentence" }));
        StringAssert.Contains(text.Message, "image model");
    }
}
