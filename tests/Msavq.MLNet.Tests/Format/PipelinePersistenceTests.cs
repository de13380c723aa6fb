using Microsoft.ML;
using Microsoft.ML.Data;
using Msavq.MLNet.Data;
using Msavq.MLNet.Tests.Estimators;
using Msavq.MLNet.Tests.Models;

namespace Msavq.MLNet.Tests.Format;

[TestClass]
public sealed class PipelinePersistenceTests
{
    [TestMethod]
    public void SaveThenLoad_InANewContext_GivesIdenticalPredictions()
    {
        var ml = new MLContext(0);
        var pipeline = TinyChain.Fit(ml, QuantizationMethod.Msavq, 2.75, TinyVlm.Create(21), CalibrationMode.OneShot);
        const int Questions = 500; // issue 5: identical predictions on 500 test questions after a fresh-process load
        var test = ShapesVqa.Generate(ml, ShapesVqaSplit.Test, Questions);
        string path = Path.Combine(Path.GetTempPath(), $"msavq-{Guid.NewGuid():N}.zip");
        MsavqPipeline.Save(ml, pipeline, test.Schema, path);

        var fresh = new MLContext(1);
        var loaded = fresh.Msavq().Load(path, out var schema);
        Assert.IsNotNull(schema.GetColumnOrNull("Image"));
        // The same typed transformer a fit gives: report, stored layers, bits.
        var typed = loaded.LastTransformer;
        Assert.HasCount(pipeline.LastTransformer.Layers.Count, typed.Layers);
        CollectionAssert.AreEqual(pipeline.LastTransformer.Layers.Select(l => l.ProxyError).ToArray(), typed.Layers.Select(l => l.ProxyError).ToArray());
        Assert.AreEqual(pipeline.LastTransformer.BitsPerWeight, typed.BitsPerWeight, 1e-12);
        CollectionAssert.AreEqual(pipeline.LastTransformer.Quantized.Layers.Select(l => l.Name).ToArray(), typed.Quantized.Layers.Select(l => l.Name).ToArray());
        Assert.AreEqual(pipeline.LastTransformer.Report.Rows.Count, typed.Report.Rows.Count);
        var before = pipeline.Transform(test);
        var after = loaded.Transform(ShapesVqa.Generate(fresh, ShapesVqaSplit.Test, Questions));
        CollectionAssert.AreEqual(before.GetColumn<string>("PredictedAnswer").ToArray(), after.GetColumn<string>("PredictedAnswer").ToArray());
        CollectionAssert.AreEqual(before.GetColumn<float>("Score").ToArray(), after.GetColumn<float>("Score").ToArray());

        // A fresh process: msavq predict loads the zip with MsavqPipeline.Load and answers the same questions.
        var psi = new System.Diagnostics.ProcessStartInfo("dotnet")
        {
            RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false,
        };
        psi.ArgumentList.Add(Path.Combine(AppContext.BaseDirectory, "msavq.dll"));
        foreach (var a in new[] { "predict", "--pipeline", path, "--questions", Questions.ToString() }) psi.ArgumentList.Add(a);
        using var child = System.Diagnostics.Process.Start(psi)!;
        // Both streams drain at once: libtorch may warn on stderr at every convolution (NNPACK on a CPU it does not
        // know), and a full stderr pipe would block the child while we wait for its stdout.
        var stderrTask = child.StandardError.ReadToEndAsync();
        string stdout = child.StandardOutput.ReadToEnd();
        string stderr = stderrTask.GetAwaiter().GetResult();
        child.WaitForExit();
        Assert.AreEqual(0, child.ExitCode, stdout + stderr);
        var lines = stdout.Split('\n', StringSplitOptions.RemoveEmptyEntries).Where(l => l.Contains('\t')).Select(l => l.Split('\t')).ToList();
        CollectionAssert.AreEqual(before.GetColumn<string>("PredictedAnswer").ToArray(), lines.Select(l => l[1]).ToArray());
        CollectionAssert.AreEqual(before.GetColumn<float>("Score").ToArray(),
            lines.Select(l => float.Parse(l[2], System.Globalization.CultureInfo.InvariantCulture)).ToArray());

        var e = Assert.Throws<Exception>(() => new MLContext(2).Model.Load(path, out _));
        StringAssert.Contains(e.ToString(), "MsavqPipeline.Load");
        File.Delete(path);
    }
}
