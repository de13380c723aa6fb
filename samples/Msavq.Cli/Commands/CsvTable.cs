using System.Text;

namespace Msavq.Cli.Commands;

/// <summary>
/// A CSV file with a header row (RFC 4180: comma-separated, fields in double quotes may hold commas, quotes doubled
/// and line breaks), read whole: what <c>msavq quantize --onnx --data DATA.csv</c> takes.
/// </summary>
internal sealed class CsvTable
{
    private CsvTable(string path, string[] header, List<string[]> rows) => (Path, Header, Rows) = (path, header, rows);

    public string Path { get; }
    public string[] Header { get; }
    public List<string[]> Rows { get; }

    /// <summary>The index of the first column named one of <paramref name="names"/> (case-insensitive), or −1.</summary>
    public int Column(params string?[] names) =>
        names.OfType<string>().Select(n => Array.FindIndex(Header, h => h.Equals(n, StringComparison.OrdinalIgnoreCase))).FirstOrDefault(i => i >= 0, -1);

    /// <exception cref="FormatException">No header, an unclosed quote, or a row with another number of fields than the header.</exception>
    public static CsvTable Read(string path)
    {
        var records = Parse(File.ReadAllText(path), path).ToList();
        if (records.Count == 0 || records[0].All(string.IsNullOrWhiteSpace)) throw new FormatException($"{path}: no header row (the first line names the columns).");
        var header = records[0].Select(h => h.Trim()).ToArray();
        var rows = new List<string[]>();
        for (int i = 1; i < records.Count; i++)
        {
            if (records[i].Length == 1 && records[i][0].Length == 0) continue;   // a blank line
            if (records[i].Length != header.Length)
                throw new FormatException($"{path}: record {i + 1} has {records[i].Length} fields; the header has {header.Length}.");
            rows.Add(records[i]);
        }
        return new CsvTable(path, header, rows);
    }

    private static IEnumerable<string[]> Parse(string text, string path)
    {
        var fields = new List<string>();
        var field = new StringBuilder();
        int i = 0;
        if (text.Length > 0 && text[0] == '\uFEFF') i = 1;
        while (i <= text.Length)
        {
            if (i == text.Length)
            {
                if (field.Length > 0 || fields.Count > 0) { fields.Add(field.ToString()); yield return fields.ToArray(); }
                yield break;
            }
            char c = text[i];
            if (c == '"' && field.Length == 0)
            {
                int start = i++;
                while (true)
                {
                    if (i >= text.Length) throw new FormatException($"{path}: a quoted field opened at character {start} is never closed.");
                    if (text[i] == '"')
                    {
                        if (i + 1 < text.Length && text[i + 1] == '"') { field.Append('"'); i += 2; continue; }
                        i++;
                        break;
                    }
                    field.Append(text[i++]);
                }
                continue;
            }
            if (c == ',') { fields.Add(field.ToString()); field.Clear(); i++; continue; }
            if (c == '\r' || c == '\n')
            {
                fields.Add(field.ToString());
                field.Clear();
                yield return fields.ToArray();
                fields.Clear();
                i += c == '\r' && i + 1 < text.Length && text[i + 1] == '\n' ? 2 : 1;
                continue;
            }
            field.Append(c);
            i++;
        }
    }
}
