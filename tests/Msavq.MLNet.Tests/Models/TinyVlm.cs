using Msavq.MLNet.Data;
using Msavq.MLNet.Models;

namespace Msavq.MLNet.Tests.Models;

/// <summary>A ShapesVlm small enough for fast tests (same structure, narrow widths).</summary>
internal static class TinyVlm
{
    public static readonly ShapesVlmConfig Config = new()
    {
        VisionWidth = 32, VisionLayers = 2, VisionHeads = 2, VisionMlp = 64,
        TextWidth = 32, TextLayers = 2, TextHeads = 2, TextMlp = 48,
    };

    public static ShapesVlm Create(int seed = 0)
    {
        TorchSharp.torch.random.manual_seed(seed);
        return new ShapesVlm(Config);
    }

    public static List<ModelRow> Rows(int count, int seed = 1, bool withAnswers = true) =>
        new ShapesVqaGenerator(seed).Take(count)
            .Select(e => new ModelRow(e.Image, e.Question, withAnswers ? e.Answer : null)).ToList();
}
