using Msavq.MLNet.Models;
using static TorchSharp.torch;

namespace Msavq.MLNet.Tests.Models;

[TestClass]
public sealed class ShapesVlmCheckpointTests
{
    private static string TempPath() => Path.Combine(Path.GetTempPath(), $"msavq-{Guid.NewGuid():N}.ckpt");

    [TestMethod]
    public void SaveLoad_RoundTrip_GivesIdenticalLogits()
    {
        using var model = TinyVlm.Create(seed: 3);
        model.eval();
        string path = TempPath();
        ShapesVlmCheckpoint.Save(model, path);
        using var loaded = ShapesVlmCheckpoint.Load(path);

        Assert.AreEqual(model.Config.TextWidth, loaded.Config.TextWidth);
        CollectionAssert.AreEqual(model.Config.Vocabulary.ToList(), loaded.Config.Vocabulary.ToList());
        using var batch = model.Encode(TinyVlm.Rows(6));
        using var scope = NewDisposeScope();
        var a = model.call(batch.Pixels, batch.Tokens);
        var b = loaded.call(batch.Pixels, batch.Tokens);
        Assert.IsTrue(a.eq(b).all().item<bool>(), "logits must be bit-identical after a round trip");
        Assert.IsFalse(Directory.GetFiles(Path.GetDirectoryName(path)!, $".{Path.GetFileName(path)}*.tmp").Any(), "no temp file left");
    }

    [TestMethod]
    public void SaveLoad_WithImageGridPositions_KeepsThemAndTheirEffect()
    {
        TorchSharp.torch.random.manual_seed(4);
        using var model = new ShapesVlm(TinyVlm.Config with { ImageGridPositions = true });
        model.eval();
        Assert.AreEqual(2, model.named_parameters().Count(p => p.name is "image_rows" or "image_cols"));
        string path = TempPath();
        ShapesVlmCheckpoint.Save(model, path);
        using var loaded = ShapesVlmCheckpoint.Load(path);
        Assert.IsTrue(loaded.Config.ImageGridPositions);
        using var batch = model.Encode(TinyVlm.Rows(4));
        using var scope = NewDisposeScope();
        Assert.IsTrue(model.call(batch.Pixels, batch.Tokens).eq(loaded.call(batch.Pixels, batch.Tokens)).all().item<bool>());

        // The embeddings are in the forward pass: zeroing them changes the logits.
        var before = model.call(batch.Pixels, batch.Tokens);
        using (no_grad())
            foreach (var p in model.named_parameters().Where(p => p.name is "image_rows" or "image_cols")) p.parameter.zero_();
        Assert.IsFalse(before.eq(model.call(batch.Pixels, batch.Tokens)).all().item<bool>());
    }

    [TestMethod]
    public void Load_ACheckpointFromBeforeImageGridPositions_LoadsWithThemOff()
    {
        // The shipped file's config JSON either has the field or predates it; both must load to what they were trained as.
        using var plain = TinyVlm.Create(seed: 5);
        string path = TempPath();
        ShapesVlmCheckpoint.Save(plain, path);
        using var loaded = ShapesVlmCheckpoint.Load(path);
        Assert.IsFalse(loaded.Config.ImageGridPositions);
        Assert.IsFalse(loaded.named_parameters().Any(p => p.name is "image_rows" or "image_cols"));
        var json = System.Text.Json.JsonSerializer.Deserialize<ShapesVlmConfig>("""{"TextWidth":32}""")!;
        Assert.IsFalse(json.ImageGridPositions, "a config without the field has the grid off");
    }

    [TestMethod]
    public void Load_MissingFile_ThrowsNamingIt()
    {
        string path = TempPath();
        var e = Assert.ThrowsExactly<FileNotFoundException>(() => ShapesVlmCheckpoint.Load(path));
        StringAssert.Contains(e.Message, path);
    }

    [TestMethod]
    [DataRow("flip")]
    [DataRow("truncate")]
    [DataRow("magic")]
    [DataRow("empty")]
    public void Load_CorruptFile_ThrowsNamingIt(string damage)
    {
        using var model = TinyVlm.Create();
        string path = TempPath();
        ShapesVlmCheckpoint.Save(model, path);
        byte[] bytes = File.ReadAllBytes(path);
        bytes = damage switch
        {
            "flip" => Flip(bytes, bytes.Length / 2),
            "truncate" => bytes.AsSpan(0, bytes.Length - 100).ToArray(),
            "magic" => Flip(bytes, 0),
            _ => Array.Empty<byte>(),
        };
        File.WriteAllBytes(path, bytes);
        var e = Assert.ThrowsExactly<InvalidDataException>(() => ShapesVlmCheckpoint.Load(path));
        StringAssert.Contains(e.Message, path);
    }

    private static byte[] Flip(byte[] b, int at) { b[at] ^= 0x40; return b; }

    /// <summary>A valid checkpoint of <paramref name="model"/> whose config JSON is edited, its checksum recomputed.</summary>
    private static byte[] WithConfig(ShapesVlm model, Action<System.Text.Json.Nodes.JsonObject> edit)
    {
        byte[] bytes = ShapesVlmCheckpoint.Serialize(model);
        int configLength = (int)BitConverter.ToUInt32(bytes, 12);
        var config = System.Text.Json.Nodes.JsonNode.Parse(bytes.AsSpan(16, configLength))!.AsObject();
        edit(config);
        byte[] json = System.Text.Encoding.UTF8.GetBytes(config.ToJsonString());
        using var ms = new MemoryStream();
        ms.Write(bytes, 0, 12);
        ms.Write(BitConverter.GetBytes((uint)json.Length));
        ms.Write(json);
        ms.Write(bytes, 16 + configLength, bytes.Length - 32 - 16 - configLength);
        ms.Write(System.Security.Cryptography.SHA256.HashData(ms.ToArray()));
        return ms.ToArray();
    }

    [TestMethod]
    [DataRow("PatchSize", 0)]
    [DataRow("PatchSize", 3)]
    [DataRow("TextHeads", 0)]
    [DataRow("TextHeads", 5)]
    [DataRow("TextWidth", -1)]
    [DataRow("TextWidth", 3000000)]
    [DataRow("VisionLayers", -2)]
    [DataRow("MaxTextTokens", 0)]
    [DataRow("ImageSize", 1 << 30)]
    public void Load_ACraftedConfig_FailsNamingTheField_BeforeAllocating(string field, int value)
    {
        using var model = TinyVlm.Create();
        var bytes = WithConfig(model, c => c[field] = value);
        long before = GC.GetTotalAllocatedBytes(precise: true);
        var e = Assert.ThrowsExactly<InvalidDataException>(() => ShapesVlmCheckpoint.Load(bytes, "crafted.ckpt"));
        StringAssert.Contains(e.Message, "crafted.ckpt");
        StringAssert.Contains(e.Message, field);
        Assert.IsLessThan(16L << 20, GC.GetTotalAllocatedBytes(precise: true) - before, "nothing big allocated");
    }

    [TestMethod]
    public void Load_AConfigLargerThanItsWeights_FailsBeforeAllocating()
    {
        using var model = TinyVlm.Create();
        // Every field in range, but 200 decoder layers of the tiny widths are more weights than the file holds.
        var e = Assert.ThrowsExactly<InvalidDataException>(() => ShapesVlmCheckpoint.Load(WithConfig(model, c => c["TextLayers"] = 200), "big.ckpt"));
        StringAssert.Contains(e.Message, "parameters");
        var vocabulary = Assert.ThrowsExactly<InvalidDataException>(() => ShapesVlmCheckpoint.Load(WithConfig(model, c => c["Vocabulary"] = null), "v.ckpt"));
        StringAssert.Contains(vocabulary.Message, "Vocabulary");
    }

    [TestMethod]
    public void ParameterCount_IsTheModelsOwn()
    {
        foreach (var config in new[] { new ShapesVlmConfig(), TinyVlm.Config, TinyVlm.Config with { ImageGridPositions = true, PatchSize = 4 } })
        {
            using var model = new ShapesVlm(config);
            Assert.AreEqual(model.parameters().Sum(p => p.numel()), config.ParameterCount(), config.ToString());
        }
        var e = Assert.ThrowsExactly<ArgumentException>(() => new ShapesVlm(TinyVlm.Config with { TextHeads = 0 }));
        Assert.AreEqual("TextHeads", e.ParamName);
    }
}
