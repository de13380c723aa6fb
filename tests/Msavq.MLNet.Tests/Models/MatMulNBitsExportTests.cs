using Microsoft.ML.OnnxRuntime;
using Microsoft.ML.OnnxRuntime.Tensors;
using Msavq.MLNet.Format;
using Msavq.MLNet.Models.Onnx;
using TorchSharp;
using static TorchSharp.torch;
using DataType = Onnx.TensorProto.Types.DataType;
using G = Msavq.MLNet.Tests.Models.OnnxGraphBuilder;
using Tensor = TorchSharp.torch.Tensor;

namespace Msavq.MLNet.Tests.Models;

/// <summary>Scalar layers written as ONNX Runtime's MatMulNBits: ONNX Runtime gives what the float32 export gives.</summary>
[TestClass]
public sealed class MatMulNBitsExportTests
{
    private const int Vocabulary = 11, Out = 16;

    /// <summary>Embeddings of width <paramref name="k"/>, then one MatMul by "proj.weight" [k, 16].</summary>
    private static OnnxModel Model(int k)
    {
        var g = new G(13);
        var ids = g.Input("input_ids", DataType.Int64, -1, -1);
        var embedded = g.Node("Gather", new[] { g.Initializer("embeddings.weight", TinyOnnxEncoder.Values(Vocabulary * k, 1), Vocabulary, k), ids });
        g.Node("MatMul", new[] { embedded, g.Initializer("proj.weight", TinyOnnxEncoder.Values(k * Out, 0.3f), k, Out) }, "last_hidden_state");
        g.Output("last_hidden_state", DataType.Float, -1, -1, Out);
        return OnnxModel.Load(g.Bytes(), TinyOnnxEncoder.Text with { AttentionMaskName = null });
    }

    /// <summary>A seeded scalar layer for "proj", whose dequantized weight becomes the model's.</summary>
    private static QuantizedLayer Quantize(OnnxModel model, int k, int bits, int groupSize, int seed)
    {
        var rng = new Random(seed);
        int groups = (k + groupSize - 1) / groupSize;
        var layer = new QuantizedLayer
        {
            Name = "proj", Rows = Out, Columns = k, Kind = QuantizedKind.Scalar, Bits = bits, GroupSize = groupSize,
            Scales = Enumerable.Range(0, Out * groups).Select(_ => (Half)(0.01 + 0.05 * rng.NextDouble())).ToArray(),
            Zeros = Enumerable.Range(0, Out * groups).Select(_ => rng.Next(1 << bits)).ToArray(),
            Codes = Enumerable.Range(0, Out * k).Select(_ => rng.Next(1 << bits)).ToArray(),
        };
        using var _ = no_grad();
        model.QuantizableLayers.Single().Module.weight!.copy_(tensor(layer.Dequantize(), new long[] { Out, k }));
        return layer;
    }

    private static float[] Run(byte[] onnx, Tensor tokens)
    {
        var dims = new[] { (int)tokens.shape[0], (int)tokens.shape[1] };
        using var session = new InferenceSession(onnx);
        using var results = session.Run(new[] { NamedOnnxValue.CreateFromTensor("input_ids", new DenseTensor<long>(tokens.data<long>().ToArray(), dims)) });
        return results.Single().AsTensor<float>().ToArray();
    }

    [TestMethod]
    [DataRow(64, 2, 16)] [DataRow(64, 2, 64)] [DataRow(64, 4, 32)] [DataRow(64, 8, 16)] [DataRow(48, 4, 32)] [DataRow(48, 2, 32)]
    public void Packed_RunsInOnnxRuntime_AsTheFloatExportDoes(int k, int bits, int groupSize)
    {
        using var model = Model(k);
        var layer = Quantize(model, k, bits, groupSize, seed: k + bits * 7 + groupSize);
        var packedFile = model.ToOnnx(new[] { layer }, out var packed);
        CollectionAssert.AreEqual(new[] { "proj" }, packed.ToArray());
        var proto = global::Onnx.ModelProto.Parser.ParseFrom(packedFile);
        Assert.AreEqual("MatMulNBits", proto.Graph.Node.Single(n => n.Output[0] == "last_hidden_state").OpType);
        Assert.IsFalse(proto.Graph.Initializer.Any(t => t.Name == "proj.weight"), "the float32 weight is still in the file");

        using var scope = NewDisposeScope();
        using var _ = no_grad();
        var (tokens, _) = model.Tokenize(new[] { "loading checks the graph .", "once" });
        var viaFloat = Run(model.ToOnnx(), tokens);
        var viaNBits = Run(packedFile, tokens);
        double worst = viaFloat.Zip(viaNBits, (a, b) => (double)Math.Abs(a - b)).Max();
        double scale = viaFloat.Max(v => Math.Abs((double)v));
        Console.WriteLine($"k {k}, {bits} bits, blocks of {groupSize}: max |MatMulNBits − float32 export| = {worst:E2} (outputs up to {scale:F2})");
        Assert.IsLessThanOrEqualTo(1e-5 * Math.Max(1, scale), worst, $"max |MatMulNBits − float32 export| = {worst:E2}");
    }

    [TestMethod]
    public void LayersMatMulNBitsCannotHold_StayFloat_AndForeignLayersAreRefused()
    {
        using var model = Model(64);
        var threeBit = Quantize(model, 64, 3, 32, seed: 1);
        var file = model.ToOnnx(new[] { threeBit }, out var packed);
        Assert.IsEmpty(packed);
        Assert.IsTrue(MatMulNBitsSupports(threeBit).Contains("3-bit"));
        CollectionAssert.AreEqual(file, model.ToOnnx(), "an unpacked layer is written as the float32 export writes it");

        var other = Quantize(model, 64, 4, 32, seed: 2);
        var foreign = new QuantizedLayer
        {
            Name = other.Name, Rows = other.Rows, Columns = other.Columns, Kind = other.Kind, Bits = other.Bits, GroupSize = other.GroupSize,
            Scales = other.Scales, Zeros = other.Zeros, Codes = other.Codes.Select(c => (c + 1) % 16).ToArray(),
        };
        var e = Assert.ThrowsExactly<ArgumentException>(() => model.ToOnnx(new[] { foreign }, out _));
        StringAssert.Contains(e.Message, "does not dequantize to the model's weight");
    }

    private static string MatMulNBitsSupports(QuantizedLayer layer)
    {
        Assert.IsFalse(MatMulNBits.Supports(layer, out string why));
        return why;
    }
}
