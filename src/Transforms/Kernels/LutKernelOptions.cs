namespace Msavq.MLNet.Kernels;

/// <summary>Knobs of the look-up kernels (<see cref="LutKernel"/>).</summary>
public sealed record LutKernelOptions
{
    /// <summary>
    /// Keep the tables in float32 instead of int8 (default false): the product then equals the dequantized one up to
    /// float rounding, at about the speed of the scalar path. For layers too sensitive for int8 tables.
    /// </summary>
    public bool ExactLookups { get; init; }

    /// <summary>Threads that split the input dimension, each with private tables and outputs (default: all cores).</summary>
    public int Threads { get; init; } = Environment.ProcessorCount;

    /// <summary>Use the AVX2 byte-shuffle path where the CPU has it (default true); false runs the portable code.</summary>
    public bool UseSimd { get; init; } = true;

    public static LutKernelOptions Default { get; } = new();
}
