namespace Msavq.MLNet.Models;

/// <summary>
/// A model that can travel inside a saved pipeline (<see cref="MsavqPipeline.Save"/>) and be rebuilt in a fresh
/// process: it serializes itself, and an assembly-level <see cref="ModelFormatAttribute"/> names the reader that
/// rebuilds it from those bytes.
/// </summary>
public interface IPersistableModel : IQuantizableModel
{
    /// <summary>The format of <see cref="Serialize"/>'s bytes, e.g. "ShapesVlm/1"; a <see cref="ModelFormatAttribute"/> declares its reader.</summary>
    string FormatName { get; }

    /// <summary>The whole model (architecture and every parameter) as bytes the format's reader accepts.</summary>
    byte[] Serialize();
}

/// <summary>Rebuilds a model from the bytes <see cref="IPersistableModel.Serialize"/> wrote.</summary>
public interface IModelReader
{
    /// <param name="bytes">The serialized model.</param>
    /// <param name="source">Where the bytes come from, for error messages.</param>
    IQuantizableModel Read(byte[] bytes, string source);
}

/// <summary>
/// Declares, on the assembly that defines a model, which <see cref="IModelReader"/> reads its format. Loading looks
/// only at readers declared this way, so a file can name a format but never an arbitrary type.
/// </summary>
[AttributeUsage(AttributeTargets.Assembly, AllowMultiple = true)]
public sealed class ModelFormatAttribute(string name, Type reader) : Attribute
{
    public string Name { get; } = name;
    /// <summary>A public class with a parameterless constructor implementing <see cref="IModelReader"/>.</summary>
    public Type Reader { get; } = reader;
    /// <summary>
    /// The first bytes every file of the format starts with (ASCII), if it has such a magic: a pipeline's model entry
    /// that does not start with them is rejected before it is inflated.
    /// </summary>
    public string? Magic { get; set; }
}
