using Msavq.MLNet.Data;
using Msavq.MLNet.Models;

namespace Msavq.MLNet.Tests.Models;

[TestClass]
public sealed class ShapesTokenizerTests
{
    [TestMethod]
    public void Encode_EveryGeneratedQuestionAndAnswer_HasNoUnknownToken()
    {
        var tok = new ShapesTokenizer(ShapesTokenizer.ShapesVocabulary());
        foreach (var e in new ShapesVqaGenerator(21).Take(3000))
        {
            var words = e.Question.Replace("?", " ?").Split(' ', StringSplitOptions.RemoveEmptyEntries);
            var ids = tok.Encode(e.Question);
            CollectionAssert.AreEqual(words, ids.Select(tok.Decode).ToArray(), e.Question);
            var answer = tok.Encode(e.Answer);
            Assert.HasCount(1, answer, e.Answer);
            Assert.AreNotEqual(tok.UnknownId, answer[0], e.Answer);
        }
    }

    [TestMethod]
    public void Constructor_RejectsAVocabularyWithoutTheSpecialTokens()
    {
        Assert.ThrowsExactly<ArgumentException>(() => new ShapesTokenizer(new[] { "red", "blue", "green" }));
    }
}
