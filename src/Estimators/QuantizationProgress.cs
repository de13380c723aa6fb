namespace Msavq.MLNet;

/// <summary>Progress of a long step: <paramref name="Stage"/> (e.g. "calibrate", "quantize"), the layer if any, i of n.</summary>
public sealed record QuantizationProgress(string Stage, string? Layer, int Index, int Count);
