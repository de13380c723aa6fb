namespace Msavq.MLNet.Data;

/// <summary>
/// The best a model can do without looking: for each question text seen in training, its most frequent answer
/// (ties broken by answer text); unseen questions get the most frequent answer of their family.
/// </summary>
public sealed class QuestionOnlyBaseline
{
    private readonly Dictionary<string, string> _byQuestion;
    private readonly Dictionary<QuestionFamily, string> _byFamily;

    public QuestionOnlyBaseline(IEnumerable<VqaExample> train)
    {
        var list = train.ToList();
        _byQuestion = list.GroupBy(e => e.Question).ToDictionary(g => g.Key, g => Mode(g.Select(e => e.Answer)));
        _byFamily = list.GroupBy(e => e.Family).ToDictionary(g => g.Key, g => Mode(g.Select(e => e.Answer)));
    }

    public string Predict(string question, QuestionFamily family) =>
        _byQuestion.TryGetValue(question, out var a) ? a : _byFamily.GetValueOrDefault(family, "");

    private static string Mode(IEnumerable<string> answers) =>
        answers.GroupBy(a => a).OrderByDescending(g => g.Count()).ThenBy(g => g.Key, StringComparer.Ordinal).First().Key;
}
