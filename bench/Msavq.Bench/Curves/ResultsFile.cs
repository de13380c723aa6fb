using Msavq.MLNet;

namespace Msavq.Bench.Curves;

/// <summary>Replaces one marked section of bench/RESULTS.md (atomically), leaving the rest of the file alone.</summary>
public static class ResultsFile
{
    public static void ReplaceSection(string path, string key, string markdown)
    {
        string begin = $"<!-- {key}:begin -->", end = $"<!-- {key}:end -->";
        string text = File.Exists(path) ? File.ReadAllText(path) : "# Results\n";
        string block = $"{begin}\n{markdown.TrimEnd()}\n{end}";
        int i = text.IndexOf(begin, StringComparison.Ordinal), j = text.IndexOf(end, StringComparison.Ordinal);
        text = i >= 0 && j > i ? text[..i] + block + text[(j + end.Length)..] : text.TrimEnd() + "\n\n" + block + "\n";
        AtomicFile.Write(path, System.Text.Encoding.UTF8.GetBytes(text));
    }
}
