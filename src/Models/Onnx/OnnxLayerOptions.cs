using System.Text.RegularExpressions;

namespace Msavq.MLNet.Models.Onnx;

/// <summary>
/// Which MatMul and Gemm nodes of an ONNX graph become quantizable Linears (<see cref="OnnxLinears"/> says which can):
/// by default every one that can; <see cref="NamePattern"/> and <see cref="MinimumWeights"/> narrow that down, or
/// <see cref="Layers"/> names them one by one.
/// </summary>
public sealed record OnnxLayerOptions
{
    /// <summary>A regular expression a layer's name must contain a match of (e.g. <c>^encoder\.layer\.[0-2]\.</c>); null for every name.</summary>
    public string? NamePattern { get; init; }

    /// <summary>The fewest weights (rows × columns) a layer must have, to leave small heads in float.</summary>
    public long MinimumWeights { get; init; }

    /// <summary>
    /// The layers to quantize, by layer or node name, instead of the pattern and size: each must be a MatMul or Gemm
    /// that can be a Linear, or loading fails saying why it cannot.
    /// </summary>
    public IReadOnlyList<string>? Layers { get; init; }

    /// <summary>The Linears these options choose among <paramref name="graph"/>'s, in graph order.</summary>
    public IReadOnlyList<OnnxLinear> Select(OnnxGraph graph)
    {
        if (Layers is { } names)
        {
            if (names.Count == 0) throw new ArgumentException($"{nameof(Layers)} is empty: name at least one layer, or leave it null.");
            var chosen = new List<OnnxLinear>();
            foreach (var name in names)
            {
                var c = graph.Linears.FirstOrDefault(c => c.Linear?.Name == name || c.Node == name)
                        ?? throw new ArgumentException($"{graph.Source} has no MatMul or Gemm node or layer named '{name}' on the path to its outputs.");
                chosen.Add(c.Linear ?? throw new ArgumentException($"{graph.Source}: '{name}' cannot be quantized: {c.Node} is not a Linear because {c.WhyNot}."));
            }
            return graph.Linears.Select(c => c.Linear).OfType<OnnxLinear>().Where(chosen.Contains).ToList();
        }
        if (MinimumWeights < 0) throw new ArgumentOutOfRangeException(nameof(MinimumWeights), MinimumWeights, "Cannot be negative.");
        var pattern = NamePattern is null ? null : new Regex(NamePattern, RegexOptions.CultureInvariant);
        var selected = graph.Linears.Select(c => c.Linear).OfType<OnnxLinear>()
            .Where(l => (pattern?.IsMatch(l.Name) ?? true) && l.Weights >= MinimumWeights).ToList();
        if (selected.Count == 0)
            throw new ArgumentException($"{graph.Source}: no layer is selected ({graph.Linears.Count(c => c.Linear != null)} MatMul/Gemm nodes can be Linears; " +
                                        $"pattern {NamePattern ?? "(any)"}, at least {MinimumWeights} weights).");
        return selected;
    }
}
