using Microsoft.ML.OnnxRuntime;
using Microsoft.ML.OnnxRuntime.Tensors;
using Tensor = TorchSharp.torch.Tensor;
using Msavq.MLNet.Models.Onnx;
using static TorchSharp.torch;
using DataType = Onnx.TensorProto.Types.DataType;
using G = Msavq.MLNet.Tests.Models.OnnxGraphBuilder;

namespace Msavq.MLNet.Tests.Models;

/// <summary>
/// Every operator of <c>OnnxOps</c> against ONNX Runtime, in the attribute and input forms its opsets use, on small
/// graphs written here; each graph runs twice — with its MatMul and Gemm nodes as Linears and as plain nodes.
/// </summary>
[TestClass]
public sealed class OnnxOpsTests
{
    [TestMethod]
    public void Elementwise_MatchOnnxRuntime()
    {
        var g = new G(13);
        var x = g.Input("x", DataType.Float, 2, 3, 4);
        var one = g.Initializer("one", new[] { 1f });
        var two = g.Initializer("two", new[] { 2f });
        var c = g.Initializer("c", new[] { 0.5f, -1f, 2f, 0f }, 4);
        var b = g.Node("Sub", new[] { g.Node("Add", new[] { x, c }), x });
        var m = g.Node("Mul", new[] { b, x });
        g.Output(g.Node("Div", new[] { m, g.Node("Add", new[] { g.Node("Mul", new[] { x, x }), one }) }));
        var s = g.Node("Sqrt", new[] { g.Node("Add", new[] { g.Node("Pow", new[] { x, two }), one }) });
        g.Output(g.Node("Exp", new[] { g.Node("Neg", new[] { g.Node("Log", new[] { s }) }) }));
        foreach (var op in new[] { "Tanh", "Relu", "Sigmoid", "Erf", "Identity" }) g.Output(g.Node(op, new[] { x }));
        AssertMatchesOnnxRuntime(g.Bytes(), ("x", Random(2, 3, 4)));
    }

    [TestMethod]
    public void IntegerDivision_TruncatesLikeOnnxRuntime()
    {
        var g = new G(13);
        var a = g.Input("a", DataType.Int64, 6);
        var b = g.Input("b", DataType.Int64, 6);
        g.Output(g.Node("Div", new[] { a, b }), DataType.Int64);
        var equal = g.Output(g.Node("Equal", new[] { a, b }), DataType.Bool);
        g.Output(g.Node("Where", new[] { equal, a, g.Node("Sub", new[] { g.Node("Mul", new[] { a, b }), b }) }), DataType.Int64);
        AssertMatchesOnnxRuntime(g.Bytes(), ("a", tensor(new long[] { 7, -7, 7, -7, 0, 9 })), ("b", tensor(new long[] { 2, 2, -2, -2, 3, 9 })));
    }

    [TestMethod]
    [DataRow(11)]   // the input coerced to 2-D at the axis
    [DataRow(13)]   // one axis
    public void Softmax_MatchesOnnxRuntime(int opset)
    {
        var g = new G(opset);
        var x = g.Input("x", DataType.Float, 2, 3, 4);
        g.Output(g.Node("Softmax", new[] { x }, null, G.Int("axis", 1)));
        g.Output(g.Node("Softmax", new[] { x }));
        AssertMatchesOnnxRuntime(g.Bytes(), ("x", Random(2, 3, 4)));
    }

    [TestMethod]
    [DataRow(13)]   // ReduceMean's axes an attribute, ReduceSum's an input
    [DataRow(18)]   // both inputs
    public void Reductions_MatchOnnxRuntime(int opset)
    {
        var g = new G(opset);
        var x = g.Input("x", DataType.Float, 2, 3, 4);
        var last = g.Initializer("last", new[] { -1L }, 1);
        var second = g.Initializer("second", new[] { 1L }, 1);
        g.Output(opset < 18 ? g.Node("ReduceMean", new[] { x }, null, G.Ints("axes", -1)) : g.Node("ReduceMean", new[] { x, last }));
        g.Output(g.Node("ReduceSum", new[] { x, second }, null, G.Int("keepdims", 0)));
        g.Output(g.Node("ReduceMean", new[] { x }, null, G.Int("keepdims", 0)));
        AssertMatchesOnnxRuntime(g.Bytes(), ("x", Random(2, 3, 4)));
    }

    [TestMethod]
    public void LayerNormalization_FusedAndDecomposed_MatchOnnxRuntime()
    {
        var g = new G(17);
        var x = g.Input("x", DataType.Float, 2, 3, 8);
        var scale = g.Initializer("scale", Enumerable.Range(0, 8).Select(i => 0.5f + i / 8f).ToArray(), 8);
        var bias = g.Initializer("bias", Enumerable.Range(0, 8).Select(i => i / 4f - 1).ToArray(), 8);
        g.Output(g.Node("LayerNormalization", new[] { x, scale, bias }, null, G.Float("epsilon", 1e-5f)));
        // The decomposed form a torch.onnx export before opset 17 writes (all-MiniLM-L6-v2's).
        var centered = g.Node("Sub", new[] { x, g.Node("ReduceMean", new[] { x }, null, G.Ints("axes", -1)) });
        var two = g.Initializer("two", new[] { 2f });
        var epsilon = g.Initializer("epsilon", new[] { 1e-5f });
        var variance = g.Node("ReduceMean", new[] { g.Node("Pow", new[] { centered, two }) }, null, G.Ints("axes", -1));
        var normed = g.Node("Div", new[] { centered, g.Node("Sqrt", new[] { g.Node("Add", new[] { variance, epsilon }) }) });
        g.Output(g.Node("Add", new[] { g.Node("Mul", new[] { normed, scale }), bias }));
        AssertMatchesOnnxRuntime(g.Bytes(), ("x", Random(2, 3, 8)));
    }

    [TestMethod]
    public void Gelu_BothApproximations_MatchOnnxRuntime()
    {
        var g = new G(20);
        var x = g.Input("x", DataType.Float, 2, 3, 4);
        g.Output(g.Node("Gelu", new[] { x }));
        g.Output(g.Node("Gelu", new[] { x }, null, G.String("approximate", "tanh")));
        AssertMatchesOnnxRuntime(g.Bytes(), ("x", Random(2, 3, 4)));
    }

    [TestMethod]
    [DataRow(9)]    // Slice's starts and ends attributes; Squeeze/Unsqueeze axes attributes
    [DataRow(11)]   // Slice's inputs, with steps; Range
    [DataRow(13)]   // Squeeze/Unsqueeze axes inputs
    [DataRow(15)]   // Shape's start and end
    [DataRow(21)]
    public void ShapeOps_MatchOnnxRuntime(int opset)
    {
        var g = new G(opset);
        var x = g.Input("x", DataType.Float, 2, 3, 4);
        var ids = g.Input("ids", DataType.Int64, 2, -1);
        string Axes(string op, string input, params long[] axes) => opset < 13
            ? g.Node(op, new[] { input }, null, G.Ints("axes", axes))
            : g.Node(op, new[] { input, g.Initializer($"{op}_axes_{axes.Length}_{input}", axes, axes.Length) });
        // The shape arithmetic of a transformer export: Shape → Gather → Unsqueeze → Concat → Reshape.
        var shape = g.Node("Shape", new[] { x });
        var three = g.Node("Gather", new[] { shape, g.Initializer("one", new[] { 1L }) });
        var target = g.Node("Concat", new[] { Axes("Unsqueeze", three, 0), g.Initializer("minus_one", new[] { -1L }, 1) }, null, G.Int("axis", 0));
        g.Output(g.Node("Reshape", new[] { x, target }));
        g.Output(g.Node("Reshape", new[] { x, g.Initializer("keep", new[] { 0L, -1L }, 2) }));
        g.Output(g.Node("Transpose", new[] { x }, null, G.Ints("perm", 2, 0, 1)));
        g.Output(g.Node("Transpose", new[] { x }));
        var unsqueezed = g.Output(opset < 11 ? Axes("Unsqueeze", x, 0, 3) : Axes("Unsqueeze", x, 0, -2));   // negative axes from opset 11
        g.Output(Axes("Squeeze", unsqueezed, 0, 3));
        g.Output(g.Node("Squeeze", new[] { unsqueezed }));
        if (opset < 10)
            g.Output(g.Node("Slice", new[] { x }, null, G.Ints("starts", 0, 1), G.Ints("ends", long.MaxValue, -1), G.Ints("axes", 0, 2)));
        else
        {
            g.Output(g.Node("Slice", new[] { x, g.Initializer("starts", new[] { 0L, 1L }, 2), g.Initializer("ends", new[] { long.MaxValue, -1L }, 2),
                                             g.Initializer("axes", new[] { 0L, 2L }, 2), g.Initializer("steps", new[] { 1L, 2L }, 2) }));
            g.Output(g.Node("Slice", new[] { x, g.Initializer("rstart", new[] { -1L }, 1), g.Initializer("rend", new[] { long.MinValue }, 1),
                                             g.Initializer("raxis", new[] { 1L }, 1), g.Initializer("rstep", new[] { -1L }, 1) }));
            var four = g.Node("Gather", new[] { shape, g.Initializer("two", new[] { 2L }) });
            var range = g.Node("Range", new[] { g.Initializer("zero", new[] { 0L }), four, g.Initializer("step", new[] { 1L }) });
            g.Output(g.Node("Cast", new[] { range }, null, G.Int("to", (int)DataType.Float)));
        }
        if (opset >= 15) g.Output(g.Node("Shape", new[] { x }, null, G.Int("start", 1), G.Int("end", -1)), DataType.Int64);
        g.Output(g.Node("Gather", new[] { x, g.Initializer("picks", new[] { 0L, -1L, 1L, 0L }, 2, 2) }, null, G.Int("axis", 2)));
        var table = g.Initializer("table", Enumerable.Range(0, 40).Select(i => i / 10f).ToArray(), 10, 4);
        g.Output(g.Node("Gather", new[] { table, ids }));
        var column = g.Initializer("column", new[] { 1f, 2f, 3f }, 3, 1);
        g.Output(g.Node("Expand", new[] { column, g.Initializer("expand_to", new[] { 2L, 1L, 4L }, 3) }));
        g.Output(g.Node("ConstantOfShape", new[] { shape }, null, G.Tensor("value", DataType.Float, new[] { 1L }, BitConverter.GetBytes(0.5f))));
        var padding = g.Node("Equal", new[] { ids, g.Initializer("pad", new[] { 0L }) });
        var idsFloat = g.Node("Cast", new[] { ids }, null, G.Int("to", (int)DataType.Float));
        g.Output(g.Node("Where", new[] { padding, g.Initializer("masked", new[] { -1e4f }), idsFloat }));
        g.Output(g.Node("Cast", new[] { padding }, null, G.Int("to", (int)DataType.Int32)), DataType.Int32);
        AssertMatchesOnnxRuntime(g.Bytes(), ("x", Random(2, 3, 4)), ("ids", tensor(new long[] { 5, 0, 9, 2, 2, 0 }, new long[] { 2, 3 })));
    }

    [TestMethod]
    [DataRow(8)]    // Gemm's C required
    [DataRow(13)]
    public void MatMulAndGemm_AsLinearsAndAsNodes_MatchOnnxRuntime(int opset)
    {
        var g = new G(opset);
        var x = g.Input("x", DataType.Float, 2, 5, 8);
        var rows = g.Input("rows", DataType.Float, 3, 8);
        var columns = g.Input("columns", DataType.Float, 8, 3);
        float[] Values(int n, float scale) => Enumerable.Range(0, n).Select(i => MathF.Sin(i * 1.7f) * scale).ToArray();
        // A torch.onnx Linear: MatMul by [in, out], then Add with the bias first.
        g.Output(g.Node("Add", new[] { g.Initializer("dense.bias", Values(6, 1), 6), g.Node("MatMul", new[] { x, g.Initializer("927", Values(48, 0.3f), 8, 6) }) }));
        // A Gemm with B [out, in], alpha and beta.
        g.Output(g.Node("Gemm", new[] { rows, g.Initializer("head.weight", Values(48, 0.2f), 6, 8), g.Initializer("head.bias", Values(6, 2), 6) }, null,
            G.Int("transB", 1), G.Float("alpha", 0.5f), G.Float("beta", 2f)));
        // Not Linears: A transposed, and a product of two activations.
        g.Output(g.Node("Gemm", new[] { columns, g.Initializer("b", Values(48, 0.1f), 8, 6), g.Initializer("c", Values(6, 1), 6) }, null, G.Int("transA", 1)));
        g.Output(g.Node("MatMul", new[] { x, g.Node("Transpose", new[] { x }, null, G.Ints("perm", 0, 2, 1)) }));
        if (opset >= 11) g.Output(g.Node("Gemm", new[] { rows, g.Initializer("onnx::Gemm_12", Values(24, 0.4f), 8, 3) }));
        var bytes = g.Bytes();

        var graph = OnnxGraph.Load(bytes, "test graph");
        var linears = graph.Linears.Where(c => c.Linear != null).Select(c => c.Linear!.Name).ToList();
        CollectionAssert.AreEqual(opset >= 11 ? new[] { "dense", "head", "Gemm_6" } : new[] { "dense", "head" }, linears,
            "named by the weight, the bias when the weight is anonymous, else the node");
        StringAssert.Contains(graph.Linears.Single(c => c.Node == "Gemm_3").WhyNot, "transA");
        StringAssert.Contains(graph.Linears.Single(c => c.Node == "MatMul_5").WhyNot, "computed by node 'Transpose_4'");
        Assert.AreEqual("Add_1", graph.Linears[0].Linear!.BiasNode, "the bias Add is folded into the Linear");
        AssertMatchesOnnxRuntime(bytes, ("x", Random(2, 5, 8)), ("rows", Random(3, 8)), ("columns", Random(8, 3)));
    }

    internal static Tensor Random(params long[] shape)
    {
        using var generator = new Generator(seed: 7);
        return randn(shape, generator: generator);
    }

    /// <summary>
    /// Every output of <paramref name="model"/> from ONNX Runtime and from <see cref="OnnxExecutor"/>, run with every
    /// possible Linear and with none: same shapes, values within 1e-5.
    /// </summary>
    internal static void AssertMatchesOnnxRuntime(byte[] model, params (string Name, Tensor Value)[] inputs)
    {
        using var session = new InferenceSession(model);
        using var results = session.Run(inputs.Select(i => Ort(i.Name, i.Value)).ToList());
        var expected = results.ToDictionary(r => r.Name, r => Values(r.Value));
        var graph = OnnxGraph.Load(model, "test graph");
        var all = graph.Linears.Select(c => c.Linear).OfType<OnnxLinear>().ToList();
        foreach (var layers in new[] { all, new List<OnnxLinear>() })
        {
            using var executor = new OnnxExecutor(graph, layers);
            using var scope = NewDisposeScope();
            var ours = executor.Run(inputs.ToDictionary(i => i.Name, i => i.Value));
            CollectionAssert.AreEquivalent(expected.Keys.ToList(), ours.Keys.ToList());
            foreach (var (name, (shape, values)) in expected)
            {
                var t = ours[name];
                CollectionAssert.AreEqual(shape, t.shape, $"{name}: shape [{string.Join(", ", t.shape)}], ONNX Runtime [{string.Join(", ", shape)}]");
                var mine = t.to_type(ScalarType.Float64).contiguous().data<double>().ToArray();
                double worst = mine.Zip(values, (a, b) => Math.Abs(a - b)).DefaultIfEmpty(0).Max();
                Assert.IsLessThanOrEqualTo(1e-5, worst, $"{name} ({layers.Count} Linears): max |TorchSharp − ONNX Runtime| = {worst:E2}");
            }
        }
    }

    private static NamedOnnxValue Ort(string name, Tensor t)
    {
        int[] dims = t.shape.Select(d => (int)d).ToArray();
        return t.dtype switch
        {
            ScalarType.Float32 => NamedOnnxValue.CreateFromTensor(name, new DenseTensor<float>(t.data<float>().ToArray(), dims)),
            ScalarType.Int64 => NamedOnnxValue.CreateFromTensor(name, new DenseTensor<long>(t.data<long>().ToArray(), dims)),
            _ => throw new NotSupportedException(t.dtype.ToString()),
        };
    }

    private static (long[] Shape, double[] Values) Values(object value)
    {
        (long[], double[]) Of<T>(Microsoft.ML.OnnxRuntime.Tensors.Tensor<T> t, Func<T, double> f) => (t.Dimensions.ToArray().Select(d => (long)d).ToArray(), t.ToArray().Select(f).ToArray());
        return value switch
        {
            Tensor<float> f => Of(f, v => v),
            Tensor<long> l => Of(l, v => v),
            Tensor<int> i => Of(i, v => v),
            Tensor<bool> b => Of(b, v => v ? 1 : 0),
            _ => throw new NotSupportedException(value.GetType().Name),
        };
    }
}
