using static TorchSharp.torch;

namespace Msavq.MLNet.Models.Onnx;

/// <summary>
/// A MatMul or Gemm node that runs as a TorchSharp <c>Linear</c> (y = x·Wᵀ + b), the form the quantizer works on.
/// </summary>
/// <param name="Name">The layer's name, from the graph (<see cref="OnnxLinears"/> says how).</param>
/// <param name="Block">Its block for sequential calibration: layers that share a numbered prefix (<c>encoder.layer.3</c>).</param>
/// <param name="Node">The MatMul or Gemm node.</param>
/// <param name="Input">The value it multiplies.</param>
/// <param name="Output">The value it defines: the node's output, or the bias Add's when the bias is folded in.</param>
/// <param name="Weight">The constant holding the weight.</param>
/// <param name="Transposed">Whether the constant is stored [out, in] already (Gemm with transB = 1); MatMul's is [in, out].</param>
/// <param name="Alpha">Gemm's factor on the product, folded into the weight.</param>
/// <param name="Bias">The constant holding the bias, if any: Gemm's C, or the constant vector a following Add adds.</param>
/// <param name="Beta">Gemm's factor on C, folded into the bias.</param>
/// <param name="BiasNode">The Add folded into the Linear, if the bias came from one.</param>
public sealed record OnnxLinear(string Name, int Block, string Node, string Input, string Output, string Weight, bool Transposed,
                                float Alpha, string? Bias, float Beta, string? BiasNode, long InFeatures, long OutFeatures)
{
    public long Weights => InFeatures * OutFeatures;

    /// <summary>The MatMul or Gemm step the Linear replaces.</summary>
    internal OnnxStep Step { get; init; } = null!;

    /// <summary>The bias Add step folded in, if any.</summary>
    internal OnnxStep? BiasStep { get; init; }

    /// <summary>
    /// For a Conv node, its window: the Linear then runs on the unfolded input patches (one row per output position,
    /// in·kh·kw features, the way GPTQ treats convolutions) and its weight is the kernel as [out, in·kh·kw].
    /// </summary>
    internal OnnxWindow? Window { get; init; }

    /// <summary>Whether the layer is a convolution (its weight the kernel, flattened per output channel).</summary>
    public bool IsConvolution => Window != null;
}

/// <summary>A MatMul or Gemm node of the graph: its <see cref="OnnxLinear"/> form, or why it has none (it then runs as the node).</summary>
public sealed record OnnxLinearCandidate(string Node, OnnxLinear? Linear, string? WhyNot);

/// <summary>
/// Which MatMul and Gemm nodes can be Linears, and their names. A node qualifies when its right-hand operand (Gemm's B)
/// is a 2-D float32 constant that nothing else reads (tied weights stay as they are: quantizing one use would change
/// the other) and, for Gemm, A is not transposed and C is absent or a constant vector. Biases are folded into the
/// Linear — Gemm's C, or the constant vector of an Add that alone reads the product — so the Linear is what a
/// hand-built model has (MiniLmEncoder's), the module <c>QuantizedLinear</c> replaces whole, and its hooks see y.
/// </summary>
/// <remarks>
/// Names: the weight's name without ".weight"; where an exporter left it anonymous (a number, or torch.onnx's
/// "onnx::MatMul_…"), the folded bias's name without ".bias"; else the node's name. A name another layer already has
/// gets "@node" appended.
/// </remarks>
internal static class OnnxLinears
{
    public static IReadOnlyList<OnnxLinearCandidate> Find(OnnxGraph graph)
    {
        var readers = graph.Steps.SelectMany(s => s.Reads.Select(v => (Value: v, Step: s)))
            .GroupBy(r => r.Value).ToDictionary(g => g.Key, g => g.Select(r => r.Step).ToList());
        var producers = graph.Steps.SelectMany(s => s.Node.Proto.Output.Select(o => (o, s))).ToDictionary(p => p.o, p => p.s);
        var found = graph.Steps.Where(s => s.Node.OpType is "MatMul" or "Gemm" or "Conv")
            .Select(s => Candidate(graph, s, readers, producers)).ToList();
        return Named(found);
    }

    private static OnnxLinearCandidate Candidate(OnnxGraph graph, OnnxStep step, Dictionary<string, List<OnnxStep>> readers,
                                                 Dictionary<string, OnnxStep> producers)
    {
        var node = step.Node;
        var p = node.Proto;
        string name = node.Name;
        OnnxLinearCandidate No(string why) => new(name, null, why);
        string w = p.Input[1];
        if (!graph.Constants.TryGetValue(w, out var weight))
            return No($"its weight '{w}' is {(producers.TryGetValue(w, out var s) ? $"computed by node '{s.Node.Name}'" : "a graph input")}, not a constant");
        if (node.OpType == "Conv") return Convolution(graph, step, weight, readers);
        if (weight.Shape.Length != 2) return No($"its weight '{w}' is {weight.Shape.Length}-D, not 2-D");
        if (weight.Type != ScalarType.Float32) return No($"its weight '{w}' is {weight.Type?.ToString() ?? "of a type TorchSharp lacks"}, not float32");
        if (readers[w].Count != 1 || p.Input.Count(i => i == w) != 1)
            return No($"its weight '{w}' is read elsewhere too (tied weights stay as they are)");

        bool transposed = false;
        float alpha = 1, beta = 1;
        string? bias = null;
        OnnxStep? biasStep = null;
        if (node.OpType == "Gemm")
        {
            if (node.Int("transA", 0) != 0) return No("transA = 1");
            transposed = node.Int("transB", 0) != 0;
            alpha = node.Float("alpha", 1);
            beta = node.Float("beta", 1);
            if (node.HasInput(2)) bias = p.Input[2];
        }
        long inFeatures = weight.Shape[transposed ? 1 : 0], outFeatures = weight.Shape[transposed ? 0 : 1];
        string output = p.Output[0];
        if (bias != null)
        {
            if (!IsVector(graph, bias, outFeatures)) return No($"its C '{bias}' is not a constant float32 vector of {outFeatures}");
        }
        else if (readers.TryGetValue(output, out var next) && next.Count == 1 && next[0].Node.OpType == "Add"
                 && !graph.Outputs.Contains(output))
        {
            var add = next[0].Node.Proto;
            string other = add.Input[0] == output ? add.Input[1] : add.Input[0];
            if (other != output && IsVector(graph, other, outFeatures))
                (bias, beta, biasStep, output) = (other, 1, next[0], add.Output[0]);
        }
        var linear = new OnnxLinear(name, 0, name, p.Input[0], output, w, transposed, alpha, bias, beta, biasStep?.Node.Name, inFeatures, outFeatures)
        {
            Step = step,
            BiasStep = biasStep,
        };
        return new(name, linear, null);
    }

    /// <summary>A Conv with a constant kernel and one group: a Linear over its unfolded input patches.</summary>
    private static OnnxLinearCandidate Convolution(OnnxGraph graph, OnnxStep step, OnnxConstant weight, Dictionary<string, List<OnnxStep>> readers)
    {
        var node = step.Node;
        var p = node.Proto;
        OnnxLinearCandidate No(string why) => new(node.Name, null, why);
        string w = p.Input[1];
        if (weight.Shape.Length is not (3 or 4)) return No($"its kernel '{w}' is {weight.Shape.Length}-D, not a 1-D or 2-D convolution's");
        if (weight.Type != ScalarType.Float32) return No($"its kernel '{w}' is {weight.Type?.ToString() ?? "of a type TorchSharp lacks"}, not float32");
        if (readers[w].Count != 1 || p.Input.Count(i => i == w) != 1)
            return No($"its kernel '{w}' is read elsewhere too (tied weights stay as they are)");
        long group = node.Int("group", 1);
        if (group != 1) return No($"group = {group}: a grouped or depthwise convolution is not one matrix");
        long outFeatures = weight.Shape[0], inFeatures = weight.Shape.Skip(1).Aggregate(1L, (a, d) => a * d);
        string? bias = node.HasInput(2) ? p.Input[2] : null;
        if (bias != null && !IsVector(graph, bias, outFeatures)) return No($"its bias '{bias}' is not a constant float32 vector of {outFeatures}");
        var window = OnnxWindow.Read(node)(weight.Shape.Skip(2).ToArray());
        var linear = new OnnxLinear(node.Name, 0, node.Name, p.Input[0], p.Output[0], w, Transposed: true, 1, bias, 1, null, inFeatures, outFeatures)
        {
            Step = step,
            Window = window,
        };
        return new(node.Name, linear, null);
    }

    private static bool IsVector(OnnxGraph graph, string value, long length) =>
        graph.Constants.TryGetValue(value, out var c) && c.Type == ScalarType.Float32
        && (c.Shape.SequenceEqual(new[] { length }) || c.Shape.SequenceEqual(new[] { 1, length }));

    /// <summary>Gives every Linear its name and block (<see cref="OnnxLinears"/>' remarks).</summary>
    private static List<OnnxLinearCandidate> Named(List<OnnxLinearCandidate> found)
    {
        static bool Anonymous(string n) => n.Length == 0 || n.All(char.IsAsciiDigit) || n.StartsWith("onnx::", StringComparison.Ordinal);
        static string Strip(string n, string suffix) => n.EndsWith(suffix, StringComparison.Ordinal) ? n[..^suffix.Length] : n;
        var names = new HashSet<string>();
        var result = new List<OnnxLinearCandidate>();
        int block = -1;
        string? blockKey = null;
        foreach (var c in found)
        {
            if (c.Linear is not { } l) { result.Add(c); continue; }
            string name = !Anonymous(l.Weight) ? Strip(l.Weight, ".weight")
                : l.Bias != null && !Anonymous(l.Bias) ? Strip(l.Bias, ".bias")
                : l.Node.Length > 0 ? l.Node : l.Output;
            if (!names.Add(name)) names.Add(name = $"{name}@{l.Node}");
            // A block is a run of layers with one numbered prefix ("encoder.layer.3"); an unnumbered run is one too.
            var parts = name.Split('.');
            int numbered = Array.FindIndex(parts, s => s.Length > 0 && s.All(char.IsAsciiDigit));
            string key = numbered < 0 ? "" : string.Join('.', parts[..(numbered + 1)]);
            if (key != blockKey) (block, blockKey) = (block + 1, key);
            result.Add(c with { Linear = l with { Name = name, Block = block } });
        }
        return result;
    }
}
