using TorchSharp;
using static TorchSharp.torch;

namespace Msavq.MLNet.Models;

/// <summary>What every model's <see cref="IQuantizableModel.Clone"/> does once the copy is built.</summary>
internal static class ModuleCopy
{
    /// <summary>
    /// Moves <paramref name="copy"/> (same architecture) to <paramref name="source"/>'s device and gives it the same
    /// parameter and buffer values and training mode; the tensors are its own, so writing one leaves the source alone.
    /// </summary>
    public static T From<T>(T copy, nn.Module source, Device device) where T : nn.Module
    {
        copy.to(device);
        using var _ = no_grad();
        // copy_ hands back a new handle to the parameter: the scope frees those handles now, not at finalization.
        using (NewDisposeScope())
        {
            var values = source.state_dict();
            foreach (var (name, t) in copy.state_dict()) t.copy_(values[name]);
        }
        copy.train(source.training);
        return copy;
    }
}
