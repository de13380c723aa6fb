using Microsoft.ML;
using Microsoft.ML.Data;
using Msavq.MLNet.Calibration;
using Msavq.MLNet.Format;
using Msavq.MLNet.Models;
using Msavq.MLNet.Models.Onnx;
using Msavq.MLNet.Models.Text;
using Msavq.MLNet.Sensitivity;
using Msavq.MLNet.Tests.Models;
using static TorchSharp.torch;

namespace Msavq.MLNet.Tests.Estimators;

/// <summary>
/// Issue 14.7 and 14.4c: the fitted transformer of a model that maps rows to vectors adds them as a column (as
/// <c>ApplyOnnxModel</c> adds a graph's outputs), and such a pipeline saves and loads like a VLM's.
/// </summary>
[TestClass]
public sealed class FeatureColumnTests
{
    private sealed class Sentence
    {
        public string Line { get; set; } = "";
        public string Next { get; set; } = "";
    }

    private sealed class Photo
    {
        [VectorType(8 * 6 * 3)]
        public byte[] Picture { get; set; } = [];
    }

    private static readonly string[] Lines =
        { "loading checks the graph .", "once", "the graph", "checks once .", "the graph checks", "loading", "once the graph .", "graph" };

    private static IDataView Sentences(MLContext ml) =>
        ml.Data.LoadFromEnumerable(Lines.Select((l, i) => new Sentence { Line = l, Next = Lines[(i + 1) % Lines.Length] }).ToList());

    private static IDataView Photos(MLContext ml, int count = 6) => ml.Data.LoadFromEnumerable(Enumerable.Range(0, count).Select(i =>
    {
        var b = new byte[8 * 6 * 3];
        new Random(i).NextBytes(b);
        return new Photo { Picture = b };
    }).ToList());

    /// <summary>GPTQ at 4 bits through the chain a user writes, with the feature column asked for.</summary>
    private static TransformerChain<MixedPrecisionVqTransformer> Fit(MLContext ml, IQuantizableModel model, IDataView data, bool text, string feature) =>
        ml.Msavq().CollectCalibration(new CalibrationCollector.Options
            {
                Model = model, ImageColumnName = text ? null : nameof(Photo.Picture), TextColumnName = text ? nameof(Sentence.Line) : null,
                AnswerColumnName = text ? nameof(Sentence.Next) : null, BatchSize = 4,
            })
            .Append(ml.Msavq().EstimateSensitivity(new SensitivityEstimator.Options { Method = QuantizationMethod.Gptq, TargetBitsPerWeight = 4.5 }))
            .Append(ml.Msavq().QuantizeMixedPrecisionVq(new MixedPrecisionVqEstimator.Options { ScoreRows = false, FeatureColumnName = feature }))
            .Fit(data);

    private static float[][] Column(IDataView view, string name) =>
        view.GetColumn<float[]>(name).ToArray();

    [TestMethod]
    public void TextModel_AddsItsSentenceVectors_AsAFixedSizeColumn_AndTheSavedPipelineGivesTheSame()
    {
        var ml = new MLContext(0);
        using var model = OnnxModel.Load(TinyOnnxEncoder.Build(), TinyOnnxEncoder.Text);
        var data = Sentences(ml);
        var chain = Fit(ml, model, data, text: true, feature: "Embedding");
        var quantizer = chain.LastTransformer;
        var quantized = (OnnxModel)quantizer.Model;
        var output = chain.Transform(data);

        var type = output.Schema["Embedding"].Type as VectorDataViewType;
        Assert.IsNotNull(type);
        Assert.AreEqual(NumberDataViewType.Single, type.ItemType);
        Assert.AreEqual(TinyOnnxEncoder.Width, type.Size, "the hidden size, read from the graph");
        var vectors = Column(output, "Embedding");
        float[][] expected;
        using (var scope = NewDisposeScope())
        {
            using var _ = no_grad();
            // One sentence at a time, as rows are scored (the tiny graph does not mask padded keys, so batching would change them).
            expected = Lines.Select(l => quantized.Embed(new[] { l })[0].data<float>().ToArray()).ToArray();
        }
        for (int i = 0; i < Lines.Length; i++) CollectionAssert.AreEqual(expected[i], vectors[i], $"row {i}: the quantized model's sentence vector");
        using (var fp = no_grad())
        {
            using var scope = NewDisposeScope();
            Assert.IsFalse(model.Embed(Lines).eq(quantized.Embed(Lines)).all().item<bool>(), "the column holds the quantized model's vectors, not the original's");
        }

        // A PredictionEngine reads the same column.
        var engine = ml.Model.CreatePredictionEngine<Sentence, EmbeddingRow>(chain, data.Schema);
        CollectionAssert.AreEqual(expected[2], engine.Predict(new Sentence { Line = Lines[2] }).Embedding);

        // Saved and loaded in one zip (issue 14.4c): the same typed transformer, the same vectors.
        string path = Path.Combine(Path.GetTempPath(), $"msavq-feature-{Guid.NewGuid():N}.zip");
        try
        {
            ml.Msavq().Save(chain, data.Schema, path);
            var loaded = ml.Msavq().Load(path, out var schema);
            using var again = (OnnxModel)loaded.LastTransformer.Model;
            Assert.AreEqual("Embedding", loaded.LastTransformer.FeatureColumn);
            Assert.AreEqual(nameof(Sentence.Line), loaded.LastTransformer.FeatureInputColumn);
            Assert.AreEqual(quantizer.BitsPerWeight, loaded.LastTransformer.BitsPerWeight);
            Assert.AreEqual(TinyOnnxEncoder.Width, ((VectorDataViewType)loaded.GetOutputSchema(schema)["Embedding"].Type).Size);
            var reloaded = Column(loaded.Transform(data), "Embedding");
            for (int i = 0; i < Lines.Length; i++) CollectionAssert.AreEqual(vectors[i], reloaded[i], $"row {i} after Save/Load");
        }
        finally
        {
            File.Delete(path);
            quantized.Dispose();
        }
    }

    private sealed class EmbeddingRow
    {
        public float[] Embedding { get; set; } = [];
    }

    [TestMethod]
    public void ImageModel_AddsItsOutputFlattened_FromTheImageColumnItCalibratedOn_AndSavesAndLoads()
    {
        var ml = new MLContext(0);
        using var model = OnnxModel.Load(OnnxImageModelTests.TinyConvNet(), new OnnxImageOptions());
        var data = Photos(ml);
        var chain = Fit(ml, model, data, text: false, feature: "Features");
        var quantized = (OnnxModel)chain.LastTransformer.Model;
        var output = chain.Transform(data);
        Assert.AreEqual(4, ((VectorDataViewType)output.Schema["Features"].Type).Size, "the pooled conv's four channels");
        var images = data.GetColumn<byte[]>(nameof(Photo.Picture)).ToList();
        var vectors = Column(output, "Features");
        using (var scope = NewDisposeScope())
        {
            using var _ = no_grad();
            var e = quantized.EmbedImages(images);
            for (int i = 0; i < images.Count; i++) CollectionAssert.AreEqual(e[i].data<float>().ToArray(), vectors[i], $"row {i}");
        }

        string path = Path.Combine(Path.GetTempPath(), $"msavq-feature-{Guid.NewGuid():N}.zip");
        try
        {
            ml.Msavq().Save(chain, data.Schema, path);
            var loaded = ml.Msavq().Load(path, out _);
            using var again = (OnnxModel)loaded.LastTransformer.Model;
            Assert.AreEqual(model.Image, again.Image! with { Mean = model.Image!.Mean, Std = model.Image.Std }, "the resolved image options travel with the model");
            CollectionAssert.AreEqual(model.Image.Mean, again.Image.Mean);
            var reloaded = Column(loaded.Transform(data), "Features");
            for (int i = 0; i < images.Count; i++) CollectionAssert.AreEqual(vectors[i], reloaded[i], $"row {i} after Save/Load");
        }
        finally
        {
            File.Delete(path);
            quantized.Dispose();
        }
    }

    [TestMethod]
    public void ClsPooling_IsTheUsersChoice_AndTheColumnFollowsIt()
    {
        using var mean = OnnxModel.Load(TinyOnnxEncoder.Build(), TinyOnnxEncoder.Text);
        using var cls = OnnxModel.Load(TinyOnnxEncoder.Build(), TinyOnnxEncoder.Text with { Pooling = SentencePooling.Cls, Normalize = false });
        using var scope = NewDisposeScope();
        using var _ = no_grad();
        var rows = Lines.Select(l => new ModelRow([], l)).ToList();
        var (tokens, mask) = cls.Tokenize(Lines);
        Assert.IsTrue(cls.Features(rows).eq(cls.Hidden(tokens, mask).select(1, 0)).all().item<bool>(), "CLS: the first token's hidden state");
        Assert.IsFalse(mean.Features(rows).eq(cls.Features(rows)).all().item<bool>());
        Assert.AreEqual(TinyOnnxEncoder.Width, cls.FeatureLength);
    }

    [TestMethod]
    public void FeatureColumn_OnAModelWithoutVectors_OrWithoutItsInputColumn_IsAClearError()
    {
        var ml = new MLContext(0);
        var model = TinyVlm.Create();
        var e = Assert.ThrowsExactly<ArgumentException>(() => new MixedPrecisionVqTransformer(ml, model, [],
            new QuantizedModel("Gptq", new Dictionary<string, string>(), []), ShapesVqaSchema(ml), "Image", "Question", featureColumn: "Embedding"));
        StringAssert.Contains(e.Message, "not an IFeatureModel");

        using var encoder = OnnxModel.Load(TinyOnnxEncoder.Build(), TinyOnnxEncoder.Text);
        var noText = Photos(ml).Schema;
        var missing = Assert.ThrowsExactly<ArgumentOutOfRangeException>(() => new MixedPrecisionVqTransformer(ml, encoder, [],
            new QuantizedModel("Gptq", new Dictionary<string, string>(), []), noText, null, "Question", featureColumn: "Embedding"));
        StringAssert.Contains(missing.Message, "'Question' not found");

        var estimator = ml.Msavq().QuantizeMixedPrecisionVq(new MixedPrecisionVqEstimator.Options
        {
            ScoreRows = false, FeatureColumnName = "Embedding", TextColumnName = nameof(Sentence.Line),
        });
        var column = estimator.GetOutputSchema(Shape(Sentences(ml).Schema)).Single(c => c.Name == "Embedding");
        Assert.IsTrue(column.Kind == SchemaShape.Column.VectorKind.Vector && column.ItemType == NumberDataViewType.Single,
                      "the schema a chain propagates has the vector column");
        var absent = Assert.ThrowsExactly<ArgumentOutOfRangeException>(() => estimator.GetOutputSchema(Shape(noText)));
        StringAssert.Contains(absent.Message, "'Line', which is not there");
    }

    private static DataViewSchema ShapesVqaSchema(MLContext ml) => MLNet.Data.ShapesVqa.Generate(ml, MLNet.Data.ShapesVqaSplit.Test, 1).Schema;

    /// <summary>The shape ML.NET propagates for <paramref name="schema"/> (its factory is internal to ML.NET).</summary>
    private static SchemaShape Shape(DataViewSchema schema) => (SchemaShape)typeof(SchemaShape)
        .GetMethod("Create", System.Reflection.BindingFlags.Static | System.Reflection.BindingFlags.Public | System.Reflection.BindingFlags.NonPublic,
                   [typeof(DataViewSchema)])!.Invoke(null, [schema])!;

    [TestMethod]
    public void Checkpoint_RoundTrips_AndRejectsCorruptionAndUnsavableTokenizers()
    {
        using var model = OnnxModel.Load(TinyOnnxEncoder.Build(), TinyOnnxEncoder.Text with { MaxTokens = 16, Pooling = SentencePooling.Cls });
        var bytes = model.Serialize();
        using (var back = OnnxModelCheckpoint.Load(bytes, "test"))
        {
            Assert.AreEqual(16, back.Text!.MaxTokens);
            Assert.AreEqual(SentencePooling.Cls, back.Text.Pooling);
            Assert.IsNull(back.Text.TokenTypeIdsName);
            CollectionAssert.AreEqual(model.QuantizableLayers.Select(l => l.Name).ToArray(), back.QuantizableLayers.Select(l => l.Name).ToArray());
            using var scope = NewDisposeScope();
            using var _ = no_grad();
            Assert.IsTrue(model.Embed(Lines).eq(back.Embed(Lines)).all().item<bool>());
        }
        var flipped = bytes.ToArray();
        flipped[^40] ^= 1;
        StringAssert.Contains(Assert.ThrowsExactly<InvalidDataException>(() => OnnxModelCheckpoint.Load(flipped, "flipped")).Message, "checksum");
        StringAssert.Contains(Assert.ThrowsExactly<InvalidDataException>(() => OnnxModelCheckpoint.Load(bytes[..100], "cut")).Message, "invalid");

        using var custom = OnnxModel.Load(TinyOnnxEncoder.Build(), TinyOnnxEncoder.Text with { Tokenizer = TinyOnnxEncoder.Text.Tokenizer });
        StringAssert.Contains(Assert.ThrowsExactly<NotSupportedException>(() => custom.Serialize()).Message, "OnnxTextOptions.Bert");
    }
}
