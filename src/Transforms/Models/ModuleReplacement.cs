using System.Reflection;
using TorchSharp;
using TorchSharp.Utils;
using static TorchSharp.torch;

namespace Msavq.MLNet.Models;

/// <summary>
/// Puts a module in another's place inside a TorchSharp model, by dotted name. TorchSharp's <c>Linear</c> is sealed
/// and <c>register_module</c> keeps the first module under a name, so this swaps both what the parent's forward calls
/// (the field holding the old module, which must be typed as a base class such as <c>Module&lt;Tensor, Tensor&gt;</c>)
/// and the registered child (for <c>named_modules</c>, <c>to</c> and state dicts).
/// </summary>
public static class ModuleReplacement
{
    private static readonly FieldInfo Children = typeof(nn.Module)
        .GetField("_internal_submodules", BindingFlags.Instance | BindingFlags.NonPublic)
        ?? throw new MissingFieldException("TorchSharp.torch.nn.Module._internal_submodules (TorchSharp changed).");

    /// <summary>Replaces the module named <paramref name="name"/> under <paramref name="root"/>; returns the old one.</summary>
    public static nn.Module Replace(nn.Module root, string name, nn.Module replacement)
    {
        ArgumentNullException.ThrowIfNull(root);
        ArgumentNullException.ThrowIfNull(replacement);
        int dot = name.LastIndexOf('.');
        var parent = dot < 0 ? root : root.named_modules().FirstOrDefault(m => m.name == name[..dot]).module
                     ?? throw new ArgumentException($"No module '{name[..dot]}' in the model.", nameof(name));
        string local = name[(dot + 1)..];
        var children = (OrderedDict<string, nn.Module>)Children.GetValue(parent)!;
        if (!children.TryGetValue(local, out var old)) throw new ArgumentException($"No module '{name}' in the model.", nameof(name));
        var field = FieldsOf(parent.GetType()).FirstOrDefault(f => ReferenceEquals(f.GetValue(parent), old))
                    ?? throw new InvalidOperationException($"'{name}' is registered but no field of {parent.GetType().Name} holds it.");
        if (!field.FieldType.IsInstanceOfType(replacement))
            throw new InvalidOperationException($"Field {parent.GetType().Name}.{field.Name} is typed {field.FieldType.Name}; " +
                                                $"it cannot hold a {replacement.GetType().Name} (declare it as a Module base type).");
        field.SetValue(parent, replacement);
        children[local] = replacement;
        return old;
    }

    private static IEnumerable<FieldInfo> FieldsOf(Type? type)
    {
        for (; type is not null && type != typeof(nn.Module); type = type.BaseType)
            foreach (var f in type.GetFields(BindingFlags.Instance | BindingFlags.Public | BindingFlags.NonPublic | BindingFlags.DeclaredOnly))
                if (typeof(nn.Module).IsAssignableFrom(f.FieldType)) yield return f;
    }
}
