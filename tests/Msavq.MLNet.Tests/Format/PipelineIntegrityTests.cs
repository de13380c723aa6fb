using System.IO.Compression;
using System.Text.Json.Nodes;
using Microsoft.ML;
using Microsoft.ML.Data;
using Msavq.MLNet.Data;
using Msavq.MLNet.Format;
using Msavq.MLNet.Models;
using Msavq.MLNet.Tests.Estimators;
using Msavq.MLNet.Tests.Models;

namespace Msavq.MLNet.Tests.Format;

/// <summary>A saved pipeline loads as the model it was, or not at all (issue 16.6, 16.7, 16.10, 16.11, 16.12).</summary>
[TestClass]
public sealed class PipelineIntegrityTests
{
    private const int BaseSeed = 21;
    private static readonly object Gate = new();
    private static string? _saved;
    private static DataViewSchema? _schema;
    private static TransformerChain<MixedPrecisionVqTransformer>? _pipeline;

    /// <summary>One fitted and saved tiny pipeline, shared by the tests (each edits a copy).</summary>
    private static string Saved(out TransformerChain<MixedPrecisionVqTransformer> pipeline, out DataViewSchema schema)
    {
        lock (Gate)
        {
            if (_saved is null)
            {
                var ml = new MLContext(0);
                _pipeline = TinyChain.Fit(ml, QuantizationMethod.Rtn, 3.5, TinyVlm.Create(BaseSeed), CalibrationMode.OneShot);
                _schema = ShapesVqa.Generate(ml, ShapesVqaSplit.Test, 4).Schema;
                _saved = Temp();
                MsavqPipeline.Save(ml, _pipeline, _schema, _saved);
            }
            pipeline = _pipeline!;
            schema = _schema!;
            return _saved;
        }
    }

    private static string Temp(string extension = ".zip") => Path.Combine(Path.GetTempPath(), $"msavq-{Guid.NewGuid():N}{extension}");

    /// <summary>A copy of the saved pipeline with its entries edited.</summary>
    private static string Edited(Action<ZipArchive> edit)
    {
        string path = Temp();
        File.Copy(Saved(out _, out _), path);
        using (var zip = ZipFile.Open(path, ZipArchiveMode.Update)) edit(zip);
        return path;
    }

    private static byte[] Read(ZipArchive zip, string entry)
    {
        using var s = zip.GetEntry(entry)!.Open();
        using var m = new MemoryStream();
        s.CopyTo(m);
        return m.ToArray();
    }

    private static void Replace(ZipArchive zip, string entry, byte[] bytes) => Replace(zip, entry, s => s.Write(bytes));

    private static void Replace(ZipArchive zip, string entry, Action<Stream> write)
    {
        zip.GetEntry(entry)?.Delete();
        using var s = zip.CreateEntry(entry, CompressionLevel.Fastest).Open();
        write(s);
    }

    private static void EditDescription(ZipArchive zip, Action<JsonObject> edit)
    {
        var d = JsonNode.Parse(Read(zip, MsavqPipeline.DescriptionEntry))!.AsObject();
        edit(d);
        Replace(zip, MsavqPipeline.DescriptionEntry, System.Text.Encoding.UTF8.GetBytes(d.ToJsonString()));
    }

    private static MsavqFormatException LoadFails(string path) =>
        Assert.ThrowsExactly<MsavqFormatException>(() => new MLContext(1).Msavq().Load(path, out _));

    [TestMethod]
    public void Saved_LoadsAsItWas()
    {
        using var loaded = new MLContext(1).Msavq().Load(Saved(out var pipeline, out _), out _);
        Assert.AreEqual(pipeline.LastTransformer.BitsPerWeight, loaded.LastTransformer.BitsPerWeight, 1e-12);
    }

    [TestMethod]
    public void BaseModelOfAnotherModel_IsATypedError_InAZipAndForLoadQuantized()
    {
        Saved(out var pipeline, out var schema);
        var quantized = pipeline.LastTransformer.Quantized;
        using var other = TinyVlm.Create(BaseSeed + 1);   // the same architecture, other weights
        using (var zeroed = other.Clone())
        {
            StoredWeights.Zero(zeroed, quantized);
            var ckpt = ShapesVlmCheckpoint.Serialize(zeroed);
            string path = Edited(zip => Replace(zip, MsavqPipeline.BaseModelEntry, ckpt));
            StringAssert.Contains(LoadFails(path).Reason, "not the model");
            File.Delete(path);
        }
        string layers = Temp(".msavq");
        pipeline.LastTransformer.SaveQuantized(layers);
        var ml = new MLContext(1);
        var e = Assert.ThrowsExactly<MsavqFormatException>(() => MixedPrecisionVqTransformer.LoadQuantized(ml, layers, other, schema));
        StringAssert.Contains(e.Reason, "not the model");
        using var right = TinyVlm.Create(BaseSeed);
        using var ok = MixedPrecisionVqTransformer.LoadQuantized(ml, layers, right, schema);
        File.Delete(layers);
    }

    [TestMethod]
    public void LayerDroppedFromTheManifest_IsATypedError()
    {
        Saved(out var pipeline, out _);
        var quantized = pipeline.LastTransformer.Quantized;
        var fewer = QuantizedModelFile.ToBytes(quantized with { Layers = quantized.Layers.Take(quantized.Layers.Count - 1).ToList() });
        // The description agrees on the size and the layers: only the zeroed layer tells.
        string agreeing = Edited(zip =>
        {
            Replace(zip, MsavqPipeline.QuantizedEntry, fewer);
            EditDescription(zip, d =>
            {
                d["QuantizedBytes"] = fewer.Length;
                d["Layers"]!.AsArray().RemoveAt(d["Layers"]!.AsArray().Count - 1);
            });
        });
        StringAssert.Contains(LoadFails(agreeing).Reason, $"'{quantized.Layers[^1].Name}' is zeroed");
        // The description still lists every layer.
        string disagreeing = Edited(zip =>
        {
            Replace(zip, MsavqPipeline.QuantizedEntry, fewer);
            EditDescription(zip, d => d["QuantizedBytes"] = fewer.Length);
        });
        StringAssert.Contains(LoadFails(disagreeing).Reason, "disagree");
        File.Delete(agreeing);
        File.Delete(disagreeing);
    }

    [TestMethod]
    public void EntriesThatInflateToHundredsOfMegabytes_AreRefused_BeforeInflating()
    {
        const long Huge = 300L << 20;
        void Zeros(Stream s) { var chunk = new byte[1 << 20]; for (long n = 0; n < Huge; n += chunk.Length) s.Write(chunk); }
        var cases = new (string Name, Action<ZipArchive> Edit)[]
        {
            ("quantized", zip => Replace(zip, MsavqPipeline.QuantizedEntry, Zeros)),
            ("quantized, no description", zip => { Replace(zip, MsavqPipeline.QuantizedEntry, Zeros); zip.GetEntry(MsavqPipeline.DescriptionEntry)!.Delete(); }),
            ("base model, description agreeing", zip => { Replace(zip, MsavqPipeline.BaseModelEntry, Zeros); EditDescription(zip, d => d["BaseModelBytes"] = Huge); }),
            ("base model, no description", zip => { Replace(zip, MsavqPipeline.BaseModelEntry, Zeros); zip.GetEntry(MsavqPipeline.DescriptionEntry)!.Delete(); }),
            ("description", zip => Replace(zip, MsavqPipeline.DescriptionEntry, Zeros)),
        };
        foreach (var (name, edit) in cases)
        {
            string path = Edited(edit);
            Assert.IsLessThan(8L << 20, new FileInfo(path).Length, $"{name}: a small zip");
            long before = GC.GetTotalAllocatedBytes(precise: true);
            LoadFails(path);
            long allocated = GC.GetTotalAllocatedBytes(precise: true) - before;
            Assert.IsLessThan(48L << 20, allocated, $"{name}: {allocated / 1048576.0:F0} MB allocated");
            File.Delete(path);
        }
    }

    [TestMethod]
    public void Save_RemovesStaleTempFilesOfDeadWriters_KeepsLiveOnes_AndWritesACompleteFile()
    {
        Saved(out var pipeline, out var schema);
        string dir = Path.Combine(Path.GetTempPath(), $"msavq-{Guid.NewGuid():N}");
        Directory.CreateDirectory(dir);
        string path = Path.Combine(dir, "pipeline.zip");
        using var dead = System.Diagnostics.Process.Start("true")!;
        dead.WaitForExit();
        using var live = System.Diagnostics.Process.Start("sleep", "120")!;
        try
        {
            string Stale(int pid) => Path.Combine(dir, $".pipeline.zip.{pid}.{Guid.NewGuid():N}.msavq-tmp");
            string deadTemp = Stale(dead.Id), liveTemp = Stale(live.Id);
            File.WriteAllBytes(deadTemp, new byte[100]);
            File.WriteAllBytes(liveTemp, new byte[100]);
            MsavqPipeline.Save(new MLContext(0), pipeline, schema, path);
            Assert.IsFalse(File.Exists(deadTemp), "a killed writer's temp file is removed by the next save");
            Assert.IsTrue(File.Exists(liveTemp), "a running writer's temp file is kept");
            CollectionAssert.AreEquivalent(new[] { "pipeline.zip", Path.GetFileName(liveTemp) },
                Directory.GetFiles(dir).Select(Path.GetFileName).ToArray(), "the save left no temp file of its own");
            using var loaded = new MLContext(1).Msavq().Load(path, out _);   // complete: every entry reads back
            Assert.HasCount(pipeline.LastTransformer.Layers.Count, loaded.LastTransformer.Layers);
        }
        finally
        {
            live.Kill();
            Directory.Delete(dir, recursive: true);
        }
    }

    /// <summary>
    /// ML.NET creates every saved component by reflection, so what the mapping factory throws reaches the caller as the
    /// innermost of two TargetInvocationExceptions: the limit this test documents (and flags if ML.NET changes it).
    /// The message that matters is the base exception's, one line, naming the loader.
    /// </summary>
    [TestMethod]
    public void PlainModelLoad_NamesMsavqPipelineLoad_InTheBaseException()
    {
        var e = Assert.Throws<Exception>(() => new MLContext(2).Model.Load(Saved(out _, out _), out _));
        var chain = new List<Exception>();
        for (var x = e; x is not null; x = x.InnerException) chain.Add(x);
        Assert.IsTrue(chain.SkipLast(1).All(x => x is System.Reflection.TargetInvocationException), string.Join(" / ", chain.Select(x => x.GetType().Name)));
        var inner = e.GetBaseException();
        Assert.IsInstanceOfType<InvalidOperationException>(inner);
        StringAssert.Contains(inner.Message, "MsavqPipeline.Load(ml, path, out schema)");
        Assert.IsFalse(inner.Message.Contains('\n'), "one line");
        // ToString names it within the lines of the wrapping exceptions, before any stack trace.
        var lines = e.ToString().Split('\n');
        int at = Array.FindIndex(lines, l => l.Contains("MsavqPipeline.Load"));
        Assert.AreEqual(chain.Count - 1, at, e.ToString());
    }
}
