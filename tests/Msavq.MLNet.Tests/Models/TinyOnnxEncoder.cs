using System.Text;
using Msavq.MLNet.Models.Onnx;
using DataType = Onnx.TensorProto.Types.DataType;
using G = Msavq.MLNet.Tests.Models.OnnxGraphBuilder;

namespace Msavq.MLNet.Tests.Models;

/// <summary>
/// A text encoder small enough to write in a test: embeddings, one Linear (MatMul by "dense.weight" + bias Add),
/// an activation, a single-head self-attention without projections (two MatMuls of activations), the padding mask.
/// Nodes: Gather_0, MatMul_1, Add_2, {activation}_3, Transpose_4, MatMul_5, Softmax_6, MatMul_7, Cast_8, Unsqueeze_9, Mul_10.
/// </summary>
internal static class TinyOnnxEncoder
{
    private static readonly string[] Words = { "[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "loading", "checks", "the", "graph", ".", "once" };
    public const int Width = 8;

    /// <summary>Its vocabulary file (vocab.txt): one word per line.</summary>
    public static byte[] Vocabulary => Encoding.UTF8.GetBytes(string.Join('\n', Words) + "\n");

    /// <summary>Its text options: a WordPiece tokenizer over <see cref="Words"/>, no token types.</summary>
    public static OnnxTextOptions Text => OnnxTextOptions.Bert(Vocabulary) with { TokenTypeIdsName = null };

    public static float[] Values(int n, float scale) => Enumerable.Range(0, n).Select(i => MathF.Sin(i * 1.3f + 0.2f) * scale).ToArray();

    /// <summary>Input ids and mask in, "last_hidden_state" out.</summary>
    public static byte[] Build(string activation = "Relu", int opset = 13, params Onnx.AttributeProto[] activationAttributes)
    {
        var g = new G(opset);
        var ids = g.Input("input_ids", DataType.Int64, -1, -1);
        var mask = g.Input("attention_mask", DataType.Int64, -1, -1);
        var embedded = g.Node("Gather", new[] { g.Initializer("embeddings.weight", Values(Words.Length * Width, 1), Words.Length, Width), ids });
        var dense = g.Node("Add", new[] { g.Node("MatMul", new[] { embedded, g.Initializer("dense.weight", Values(Width * Width, 0.4f), Width, Width) }),
                                          g.Initializer("dense.bias", Values(Width, 0.1f), Width) });
        var h = g.Node(activation, new[] { dense }, null, activationAttributes);
        var scores = g.Node("MatMul", new[] { h, g.Node("Transpose", new[] { h }, null, G.Ints("perm", 0, 2, 1)) });
        var context = g.Node("MatMul", new[] { g.Node("Softmax", new[] { scores }, null, G.Int("axis", -1)), h });
        var m = g.Node("Unsqueeze", new[] { g.Node("Cast", new[] { mask }, null, G.Int("to", (int)DataType.Float)), g.Initializer("last", new[] { 2L }, 1) });
        g.Node("Mul", new[] { context, m }, "last_hidden_state");
        g.Output("last_hidden_state", DataType.Float, -1, -1, Width);
        return g.Bytes();
    }

    /// <summary>
    /// input_ids → token embeddings flattened to [batch·tokens, Width] → a Gemm "flat" (constant weight and bias, with
    /// <paramref name="gemmAttributes"/>) → reshaped back to [batch, tokens, Width], named <paramref name="output"/>:
    /// an export that runs a Linear on flattened tokens. The caller adds what follows and the graph outputs.
    /// </summary>
    public static (G Graph, string Tokens) FlattenedGemm(string? output, params Onnx.AttributeProto[] gemmAttributes)
    {
        var g = new G(13);
        var ids = g.Input("input_ids", DataType.Int64, -1, -1);
        int w = Width;
        var embedded = g.Node("Gather", new[] { g.Initializer("embeddings.weight", Values(Words.Length * w, 1), Words.Length, w), ids });
        var flat = g.Node("Reshape", new[] { embedded, g.Initializer("rows", new[] { -1L, w }, 2) });
        var dense = g.Node("Gemm", new[] { flat, g.Initializer("flat.weight", Values(w * w, 0.3f), w, w), g.Initializer("flat.bias", Values(w, 1), w) },
                           null, gemmAttributes);
        return (g, g.Node("Reshape", new[] { dense, g.Node("Shape", new[] { embedded }) }, output));
    }
}
