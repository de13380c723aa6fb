using Msavq.MLNet.Models.Onnx;
using static TorchSharp.torch;
using DataType = Onnx.TensorProto.Types.DataType;
using G = Msavq.MLNet.Tests.Models.OnnxGraphBuilder;

namespace Msavq.MLNet.Tests.Models;

/// <summary>
/// The convolutional-network operators against ONNX Runtime, in the forms their opsets and exporters use (asymmetric
/// pads, auto_pad, dilations, 1-D and grouped convolutions); each graph runs with its Conv nodes as Linears over
/// unfolded patches and as plain convolutions (<see cref="OnnxOpsTests.AssertMatchesOnnxRuntime"/>).
/// </summary>
[TestClass]
public sealed class OnnxConvNetOpsTests
{
    private static float[] Values(int n, int seed) => Enumerable.Range(0, n).Select(i => (float)Math.Sin(seed * 31 + i * 0.7) * 0.5f).ToArray();

    [TestMethod]
    [DataRow(8)]    // CNTK's ResNet18: BatchNormalization with spatial, MaxPool without dilations
    [DataRow(13)]
    public void ConvBatchNormPooling_MatchOnnxRuntime(int opset)
    {
        var g = new G(opset);
        var x = g.Input("x", DataType.Float, 2, 3, 11, 13);
        var w1 = g.Initializer("conv1.weight", Values(4 * 3 * 3 * 3, 1), 4, 3, 3, 3);
        var b1 = g.Initializer("conv1.bias", Values(4, 2), 4);
        // Stride 2 with asymmetric pads (top/left 2, bottom/right 1), as CNTK writes them.
        var c1 = g.Node("Conv", new[] { x, w1, b1 }, null, G.Ints("kernel_shape", 3, 3), G.Ints("strides", 2, 2), G.Ints("pads", 2, 2, 1, 1),
                        G.Ints("dilations", 1, 1), G.Int("group", 1));
        var scale = g.Initializer("bn.scale", Values(4, 3).Select(v => 1 + v).ToArray(), 4);
        var bias = g.Initializer("bn.bias", Values(4, 4), 4);
        var mean = g.Initializer("bn.mean", Values(4, 5), 4);
        var variance = g.Initializer("bn.var", Values(4, 6).Select(v => 0.5f + v * v).ToArray(), 4);
        var bnAttributes = opset < 9 ? new[] { G.Float("epsilon", 1e-5f), G.Float("momentum", 0.9f), G.Int("spatial", 1) } : new[] { G.Float("epsilon", 1e-3f) };
        var bn = g.Node("BatchNormalization", new[] { c1, scale, bias, mean, variance }, null, bnAttributes);
        var r = g.Node("Relu", new[] { bn });
        var pool = g.Node("MaxPool", new[] { r }, null, G.Ints("kernel_shape", 3, 3), G.Ints("strides", 2, 2), G.Ints("pads", 1, 1, 0, 0));
        // A dilated conv, no bias; a strided one with SAME_UPPER padding.
        var w2 = g.Initializer("conv2.weight", Values(5 * 4 * 2 * 2, 7), 5, 4, 2, 2);
        var c2 = g.Node("Conv", new[] { r, w2 }, null, G.Ints("dilations", 2, 1), G.Ints("pads", 1, 0, 1, 1));
        var w3 = g.Initializer("conv3.weight", Values(3 * 4 * 3 * 3, 12), 3, 4, 3, 3);
        g.Output(pool);
        g.Output(c2);
        g.Output(g.Node("Conv", new[] { r, w3 }, null, G.String("auto_pad", "SAME_UPPER"), G.Ints("strides", 2, 2)));
        g.Output(g.Node("AveragePool", new[] { c2 }, null, G.Ints("kernel_shape", 3, 2), G.Ints("strides", 1, 2), G.Ints("pads", 1, 0, 0, 1)));
        g.Output(g.Node("AveragePool", new[] { c2 }, null, G.Ints("kernel_shape", 3, 3), G.Ints("pads", 1, 1, 1, 1), G.Int("count_include_pad", 1)));
        g.Output(g.Node("Flatten", new[] { g.Node("GlobalAveragePool", new[] { c2 }) }));
        g.Output(g.Node("GlobalMaxPool", new[] { c2 }));
        OnnxOpsTests.AssertMatchesOnnxRuntime(g.Bytes(), ("x", OnnxOpsTests.Random(2, 3, 11, 13)));
    }

    [TestMethod]
    public void GroupedAndOneDimensional_MatchOnnxRuntime()
    {
        var g = new G(13);
        var x = g.Input("x", DataType.Float, 2, 4, 9, 7);
        // Depthwise (group = channels) runs as a node: it is no single matrix.
        var dw = g.Node("Conv", new[] { x, g.Initializer("dw", Values(4 * 3 * 3, 8), 4, 1, 3, 3) }, null, G.Int("group", 4), G.Ints("pads", 1, 1, 1, 1));
        g.Output(g.Node("Conv", new[] { dw, g.Initializer("pw", Values(6 * 4, 9), 6, 4, 1, 1), g.Initializer("pb", Values(6, 10), 6) }));
        var s = g.Input("s", DataType.Float, 2, 3, 10);
        g.Output(g.Node("Conv", new[] { s, g.Initializer("c1d", Values(5 * 3 * 3, 11), 5, 3, 3) }, null, G.Ints("strides", 2), G.Ints("pads", 1, 0)));
        g.Output(g.Node("MaxPool", new[] { s }, null, G.Ints("kernel_shape", 3), G.Ints("strides", 2), G.Int("ceil_mode", 1)));
        g.Output(g.Node("MaxPool", new[] { x }, null, G.Ints("kernel_shape", 2, 2), G.Ints("dilations", 2, 2), G.Ints("strides", 1, 2)));
        g.Output(g.Node("MaxPool", new[] { x }, null, G.Ints("kernel_shape", 2, 3), G.Ints("strides", 2, 2), G.String("auto_pad", "SAME_LOWER")));
        var graph = OnnxGraph.Load(g.Bytes(), "grouped");
        var depthwise = graph.Linears.Single(c => c.Node == dw);
        Assert.IsNull(depthwise.Linear);
        StringAssert.Contains(depthwise.WhyNot, "group = 4");
        Assert.AreEqual(2, graph.Linears.Count(c => c.Linear is { IsConvolution: true }));
        OnnxOpsTests.AssertMatchesOnnxRuntime(g.Bytes(), ("x", OnnxOpsTests.Random(2, 4, 9, 7)), ("s", OnnxOpsTests.Random(2, 3, 10)));
    }

    [TestMethod]
    [DataRow(8)]    // Clip's bounds attributes
    [DataRow(14)]   // Clip's bounds inputs, HardSwish
    public void Activations_MatchOnnxRuntime(int opset)
    {
        var g = new G(opset);
        var x = g.Input("x", DataType.Float, 2, 3, 4);
        g.Output(opset < 11 ? g.Node("Clip", new[] { x }, null, G.Float("min", -0.5f), G.Float("max", 0.7f))
                            : g.Node("Clip", new[] { x, g.Initializer("lo", new[] { -0.5f }), g.Initializer("hi", new[] { 0.7f }) }));
        g.Output(g.Node("HardSigmoid", new[] { x }, null, G.Float("alpha", 1f / 6), G.Float("beta", 0.5f)));
        g.Output(g.Node("LeakyRelu", new[] { x }, null, G.Float("alpha", 0.1f)));
        if (opset >= 14) g.Output(g.Node("HardSwish", new[] { x }));
        OnnxOpsTests.AssertMatchesOnnxRuntime(g.Bytes(), ("x", OnnxOpsTests.Random(2, 3, 4)));
    }

    [TestMethod]
    public void UnsupportedWindowForms_AreRefusedAtLoad()
    {
        var g = new G(13);
        var x = g.Input("x", DataType.Float, 1, 1, 4, 4);
        g.Output(g.Node("AveragePool", new[] { x }, null, G.Ints("kernel_shape", 2, 2), G.Int("ceil_mode", 1)));
        var e = Assert.ThrowsExactly<NotSupportedException>(() => OnnxGraph.Load(g.Bytes(), "pool"));
        StringAssert.Contains(e.Message, "ceil_mode");
        StringAssert.Contains(e.Message, "AveragePool");

        var h = new G(13);
        var y = h.Input("y", DataType.Float, 1, 1, 4, 4, 4);
        h.Output(h.Node("MaxPool", new[] { y }, null, G.Ints("kernel_shape", 2, 2, 2)));
        var e3 = Assert.ThrowsExactly<NotSupportedException>(() => OnnxGraph.Load(h.Bytes(), "pool3d"));
        StringAssert.Contains(e3.Message, "3-D window");

        // SAME padding with dilations: the spec and ONNX Runtime disagree on it, so it is refused rather than guessed.
        var k = new G(13);
        var z = k.Input("z", DataType.Float, 1, 1, 6, 6);
        k.Output(k.Node("Conv", new[] { z, k.Initializer("w", Values(4, 1), 1, 1, 2, 2) }, null, G.String("auto_pad", "SAME_UPPER"), G.Ints("dilations", 2, 2)));
        var ed = Assert.ThrowsExactly<NotSupportedException>(() => OnnxGraph.Load(k.Bytes(), "same"));
        StringAssert.Contains(ed.Message, "dilations");
    }
}
