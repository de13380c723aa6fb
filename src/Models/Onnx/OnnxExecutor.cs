using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace Msavq.MLNet.Models.Onnx;

/// <summary>
/// Runs an <see cref="OnnxGraph"/> in TorchSharp, eagerly, node by node in topological order, so autograd sees every
/// step. The constants are buffers of this module (they move with <c>to(device)</c> and travel in its state dict);
/// the chosen MatMul and Gemm nodes are <c>Linear</c> children, invoked through <c>call()</c> so forward hooks see them.
/// </summary>
public sealed class OnnxExecutor : nn.Module
{
    private readonly ModuleList<Linear> linears;
    private readonly Dictionary<string, string> _buffers = new();            // constant value → buffer name
    private readonly List<(OnnxStep Step, int Linear)> _plan = new();          // Linear -1: the step's kernel
    private readonly List<string>[] _release;                                   // per plan step: values nothing later reads

    /// <param name="graph">The graph to run.</param>
    /// <param name="layers">Which of <see cref="OnnxGraph.Linears"/> run as Linears; the other MatMul and Gemm nodes run as nodes.</param>
    public OnnxExecutor(OnnxGraph graph, IReadOnlyList<OnnxLinear> layers) : base(nameof(OnnxExecutor))
    {
        Graph = graph;
        Layers = layers;
        var byStep = new Dictionary<OnnxStep, int>();
        var folded = new HashSet<OnnxStep>();
        for (int i = 0; i < layers.Count; i++)
        {
            if (!graph.Linears.Any(c => ReferenceEquals(c.Linear?.Step, layers[i].Step)))
                throw new ArgumentException($"Layer '{layers[i].Name}' is not a Linear of {graph.Source}.", nameof(layers));
            byStep.Add(layers[i].Step, i);
            if (layers[i].BiasStep is { } add) folded.Add(add);
        }
        foreach (var step in graph.Steps.Where(s => !folded.Contains(s)))
            _plan.Add((step, byStep.GetValueOrDefault(step, -1)));
        linears = nn.ModuleList(layers.Select(MakeLinear).ToArray());

        var read = _plan.SelectMany(p => p.Linear < 0 ? p.Step.Reads : new[] { layers[p.Linear].Input }).Concat(graph.Outputs).ToHashSet();
        foreach (var (name, constant) in graph.Constants.Where(c => read.Contains(c.Key)))
        {
            string buffer = $"constant{_buffers.Count}";   // graph names may hold dots, which TorchSharp reserves for paths
            register_buffer(buffer, constant.Create());
            _buffers.Add(name, buffer);
        }
        _release = ReleasePlan(graph.Outputs);
        RegisterComponents();
    }

    /// <summary>
    /// After each step, the values it computed or read that no later step reads and no output is: <see cref="Run"/>
    /// frees them at once, so a pass holds only the live activations (a conv net's early maps are megabytes each, and
    /// memory that is freed is memory glibc reuses instead of asking the kernel for fresh, zeroed pages).
    /// </summary>
    private List<string>[] ReleasePlan(IReadOnlyList<string> outputs)
    {
        var lastUse = new Dictionary<string, int>();
        for (int i = 0; i < _plan.Count; i++)
        {
            lastUse[Produced(i)] = i;   // a value nothing reads is released where it is made
            foreach (var r in Reads(i)) lastUse[r] = i;
        }
        var produced = Enumerable.Range(0, _plan.Count).Select(Produced).ToHashSet();
        var release = Enumerable.Range(0, _plan.Count).Select(_ => new List<string>()).ToArray();
        foreach (var (name, step) in lastUse)
            if (produced.Contains(name) && !outputs.Contains(name)) release[step].Add(name);
        return release;
    }

    private IEnumerable<string> Reads(int i) => _plan[i].Linear < 0 ? _plan[i].Step.Reads : new[] { Layers[_plan[i].Linear].Input };

    private string Produced(int i) => _plan[i].Linear < 0 ? _plan[i].Step.Node.Proto.Output[0] : Layers[_plan[i].Linear].Output;

    public OnnxGraph Graph { get; }

    /// <summary>The nodes that run as Linears, in graph order, matching <see cref="Linears"/>.</summary>
    public IReadOnlyList<OnnxLinear> Layers { get; }

    /// <summary>The Linear modules of <see cref="Layers"/>.</summary>
    public IReadOnlyList<Linear> Linears => linears.AsReadOnly();

    /// <summary>
    /// The graph's outputs for <paramref name="inputs"/> (by graph input name; cast to the input's declared type).
    /// </summary>
    /// <param name="tokens">
    /// The batch's token grid, when there is one: a Linear fed [batch·tokens, n] rows (exports that flatten before a
    /// Gemm) sees them as [batch, tokens, n], so calibration can tell which token each row belongs to.
    /// </param>
    public Dictionary<string, Tensor> Run(IReadOnlyDictionary<string, Tensor> inputs, (long Batch, long Tokens)? tokens = null)
    {
        using var scope = NewDisposeScope();
        var values = new Dictionary<string, Tensor>();
        foreach (var (name, buffer) in _buffers) values[name] = get_buffer(buffer)!;
        foreach (var input in Graph.Inputs)
        {
            if (!inputs.TryGetValue(input.Name, out var t))
                throw new ArgumentException($"{Graph.Source} needs input '{input.Name}'; given: {string.Join(", ", inputs.Keys)}.", nameof(inputs));
            values[input.Name] = OnnxTensors.ScalarTypeOf(input.ElementType) is { } type && t.dtype != type ? t.to_type(type) : t;
        }
        for (int i = 0; i < _plan.Count; i++)
        {
            var (step, index) = _plan[i];
            try
            {
                if (index < 0)
                {
                    var args = step.Node.Proto.Input.Select(i => i.Length == 0 ? null : values[i]).ToArray();
                    values[step.Node.Proto.Output[0]] = step.Kernel(args);
                }
                else
                {
                    var layer = Layers[index];
                    var x = values[layer.Input];
                    values[layer.Output] = layer.Window is { } window ? CallConvolution(linears[index], x, window, step.Node)
                                                                      : CallLinear(linears[index], x, tokens);
                }
            }
            catch (Exception e) when (e is not (ArgumentException or NotSupportedException or InvalidDataException))
            {
                throw new InvalidOperationException($"ONNX {step.Node.Describe()} failed: {e.Message}", e);
            }
            // Autograd keeps what it saved for the backward pass: only this handle goes. A kernel may hand a value
            // on unchanged (Identity, a no-op Reshape), so a tensor another live name holds stays.
            foreach (var name in _release[i])
                if (values.Remove(name, out var dead) && !values.Values.Any(v => ReferenceEquals(v, dead))) dead.Dispose();
        }
        return Graph.Outputs.ToDictionary(o => o, o => values[o].alias().MoveToOuterDisposeScope());
    }

    private static Tensor CallLinear(Linear linear, Tensor x, (long Batch, long Tokens)? tokens)
    {
        if (tokens is not { } grid || x.dim() != 2 || x.shape[0] != grid.Batch * grid.Tokens) return linear.call(x);
        return linear.call(x.view(grid.Batch, grid.Tokens, x.shape[1])).view(grid.Batch * grid.Tokens, -1);
    }

    /// <summary>
    /// A Conv as its Linear: the padded input unfolded into patches [N, positions, in·kh·kw], one row per output
    /// position (what the hooks see, so calibration statistics are GPTQ's for convolutions), then folded back to
    /// [N, out, H′, W′] (or [N, out, L′] for a 1-D convolution).
    /// </summary>
    private static Tensor CallConvolution(Linear linear, Tensor x, OnnxWindow window, OnnxNode node)
    {
        var x2 = window.Pad(OnnxWindow.As2D(x, node));
        var (kh, kw) = (window.Kernel[0], window.Kernel[1]);
        long outH = (x2.shape[2] - ((kh - 1) * window.Dilations[0] + 1)) / window.Strides[0] + 1;
        long outW = (x2.shape[3] - ((kw - 1) * window.Dilations[1] + 1)) / window.Strides[1] + 1;
        if (outH < 1 || outW < 1)
            throw new ArgumentException($"ONNX {node.Describe()}: input [{string.Join(", ", x.shape)}] is smaller than the kernel.");
        var patches = nn.functional.unfold(x2, (kh, kw), (window.Dilations[0], window.Dilations[1]), (0, 0), (window.Strides[0], window.Strides[1]));
        var y = linear.call(patches.transpose(1, 2)).transpose(1, 2).reshape(x2.shape[0], -1, outH, outW);
        return OnnxWindow.Back(y, x);
    }

    /// <summary>The Linear of a MatMul or Gemm: weight [out, in] = α·(B or Bᵀ), bias = β·C (or the folded Add's vector).</summary>
    private Linear MakeLinear(OnnxLinear l)
    {
        var linear = nn.Linear(l.InFeatures, l.OutFeatures, hasBias: l.Bias != null);
        using var _ = no_grad();
        using var scope = NewDisposeScope();
        var w = Graph.Constants[l.Weight].Create();
        using var alpha = ((double)l.Alpha).ToScalar();
        // A Conv's kernel [out, in, kh, kw] flattens per output channel in unfold's (in, kh, kw) order.
        linear.weight!.copy_((l.IsConvolution ? w.reshape(l.OutFeatures, l.InFeatures) : l.Transposed ? w : w.t()).mul(alpha));
        if (l.Bias != null)
        {
            using var beta = ((double)l.Beta).ToScalar();
            linear.bias!.copy_(Graph.Constants[l.Bias].Create().reshape(l.OutFeatures).mul(beta));
        }
        return linear;
    }
}
