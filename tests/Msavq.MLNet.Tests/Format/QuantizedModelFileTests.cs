using Microsoft.ML;
using Microsoft.ML.Data;
using Msavq.MLNet.Data;
using Msavq.MLNet.Format;
using Msavq.MLNet.Models;
using Msavq.MLNet.Quantization;
using Msavq.MLNet.Tests.Estimators;
using Msavq.MLNet.Tests.Models;

namespace Msavq.MLNet.Tests.Format;

[TestClass]
public sealed class QuantizedModelFileTests
{
    private static readonly Dictionary<QuantizationMethod, byte[]> Files = new();

    /// <summary>A small .msavq file per method, from the tiny VLM (cached: the corruption tests reuse it).</summary>
    private static (MixedPrecisionVqTransformer Q, byte[] Bytes) Quantized(QuantizationMethod method)
    {
        var ml = new MLContext(0);
        var q = TinyChain.Fit(ml, method, 2.75, TinyVlm.Create(11), CalibrationMode.OneShot).LastTransformer;
        var bytes = QuantizedModelFile.ToBytes(q.Quantized);
        lock (Files) Files[method] = bytes;
        return (q, bytes);
    }

    [TestMethod]
    public void BitPacking_RoundTrips_AtEveryWidth()
    {
        var rng = new Random(1);
        foreach (int bits in new[] { 1, 2, 3, 4, 5, 7, 8, 12, 16 })
        {
            var codes = Enumerable.Range(0, 1001).Select(_ => rng.Next(1 << bits)).ToArray();
            var packed = BitPacking.Pack(codes, bits);
            Assert.AreEqual((1001L * bits + 7) / 8, packed.Length);
            CollectionAssert.AreEqual(codes, BitPacking.Unpack(packed, codes.Length, bits));
        }
        Assert.ThrowsExactly<ArgumentOutOfRangeException>(() => BitPacking.Pack(new[] { 4 }, 2));
    }

    [TestMethod]
    [DataRow(QuantizationMethod.Rtn)]
    [DataRow(QuantizationMethod.Gptq)]
    [DataRow(QuantizationMethod.Gptvq)]
    [DataRow(QuantizationMethod.Msavq)]
    public void SaveThenLoad_GivesTheSameWeights_AndPredictions(QuantizationMethod method)
    {
        var (q, bytes) = Quantized(method);
        string path = Path.Combine(Path.GetTempPath(), $"msavq-{Guid.NewGuid():N}.msavq");
        q.SaveQuantized(path);
        CollectionAssert.AreEqual(bytes, File.ReadAllBytes(path), "deterministic bytes");
        var ml = new MLContext(0);
        var data = ShapesVqa.Generate(ml, ShapesVqaSplit.Test, 16);
        var again = MixedPrecisionVqTransformer.LoadQuantized(ml, path, TinyVlm.Create(11), data.Schema);
        foreach (var layer in q.Quantized.Layers)
        {
            var a = q.Model.QuantizableLayers.First(l => l.Name == layer.Name).Module.weight.data<float>().ToArray();
            var b = again.Model.QuantizableLayers.First(l => l.Name == layer.Name).Module.weight.data<float>().ToArray();
            Assert.IsTrue(a.AsSpan().SequenceEqual(b), layer.Name);
        }
        var p1 = q.Transform(data).GetColumn<string>(MixedPrecisionVqTransformer.PredictedAnswerColumn).ToArray();
        var p2 = again.Transform(data).GetColumn<string>(MixedPrecisionVqTransformer.PredictedAnswerColumn).ToArray();
        CollectionAssert.AreEqual(p1, p2);
        Assert.AreEqual(q.BitsPerWeight, again.BitsPerWeight, 1e-9);
        File.Delete(path);
    }

    [TestMethod]
    public void FileSize_IsAtMostAverageBitsPlusATenth_OverThirtyTwo()
    {
        // The tiny model's layers are too small for the JSON header not to matter; a real one shows the ratio.
        var ml = new MLContext(0);
        var vlm = ShapesVlm.LoadPretrained();
        var calib = ShapesVqa.Generate(ml, ShapesVqaSplit.Train, 16);
        var q = ml.Msavq().CollectCalibration(new Calibration.CalibrationCollector.Options { Model = vlm, Mode = CalibrationMode.OneShot })
            .Append(ml.Msavq().EstimateSensitivity(2.25))
            .Append(ml.Msavq().QuantizeMixedPrecisionVq(new MixedPrecisionVqEstimator.Options { KMeansIterations = 10 }))
            .Fit(calib).LastTransformer;
        long bytes = QuantizedModelFile.ToBytes(q.Quantized).LongLength;
        double fp32 = q.Layers.Sum(l => (double)l.Weights) * 4;
        Assert.IsTrue(bytes <= (q.BitsPerWeight + 0.1) / 32 * fp32, $"{bytes} bytes vs fp32 {fp32}: {bytes / fp32 * 32:F3} bits/weight on disk, {q.BitsPerWeight:F3} accounted");
    }

    [TestMethod]
    public void BadFiles_GetSpecificErrors()
    {
        var bytes = Files.TryGetValue(QuantizationMethod.Msavq, out var b) ? b : Quantized(QuantizationMethod.Msavq).Bytes;
        string Error(byte[] content)
        {
            var e = Assert.ThrowsExactly<MsavqFormatException>(() => QuantizedModelFile.FromBytes(content, "model.msavq"));
            Assert.AreEqual("model.msavq", e.File);
            return e.Reason;
        }
        StringAssert.Contains(Error(new byte[3]), "truncated");
        StringAssert.Contains(Error(bytes[..(bytes.Length - 10)]), "truncated");
        StringAssert.Contains(Error(System.Text.Encoding.UTF8.GetBytes("\u0010\0\0\0\0\0\0\0{\"a\":{\"b\":1}}    ")), "wrong magic");
        StringAssert.Contains(Error(WithManifest(bytes, m => m["version"] = 7)), "unknown format version 7");
        // Same code width, fewer codewords: codes beyond the new K are out of range.
        var outOfRange = WithManifest(bytes, m =>
        {
            int k = m["layers"]![0]!["codebook_sizes"]![0]!.GetValue<int>();
            m["layers"]![0]!["codebook_sizes"]![0] = (1 << ((int)Math.Ceiling(Math.Log2(k)) - 1)) + 1;
        });
        StringAssert.Contains(Error(outOfRange), "out of range");
        StringAssert.Contains(Error(WithManifest(bytes, m => m["layers"]![0]!["rows_per_group"] = 5)), "does not fit");
        var flipped = (byte[])bytes.Clone();
        flipped[^5] ^= 0x10;
        StringAssert.Contains(Error(flipped), "checksum mismatch");
    }

    [TestMethod]
    public void ManifestsThatDisagreeWithTheirData_AreRejected()
    {
        var bytes = Files.TryGetValue(QuantizationMethod.Msavq, out var b) ? b : Quantized(QuantizationMethod.Msavq).Bytes;
        string Error(byte[] content) => Assert.ThrowsExactly<MsavqFormatException>(() => QuantizedModelFile.FromBytes(content, "model.msavq")).Reason;
        StringAssert.Contains(Error(WithManifest(bytes, m => m["layers"] = new System.Text.Json.Nodes.JsonArray())), "no layers");
        // One layer dropped from the manifest, its tensors left behind.
        StringAssert.Contains(Error(WithManifest(bytes, m => m["layers"]!.AsArray().RemoveAt(m["layers"]!.AsArray().Count - 1))), "does not list");
        StringAssert.Contains(Error(WithManifest(bytes, m => m["layers"]![1]!["name"] = m["layers"]![0]!["name"]!.GetValue<string>())), "listed twice");
        Assert.IsTrue(QuantizedModelFile.FromBytes(bytes, "model.msavq").Layers[0].ColumnOrder is not null, "MSAVQ layers are permuted");
        StringAssert.Contains(Error(WithManifest(bytes, m => m["layers"]![0]!["permuted"] = false)), "\"permuted\": false");
        // In code: a model with a layer twice cannot be written into a network.
        var model = QuantizedModelFile.FromBytes(bytes, "model.msavq");
        var twice = model with { Layers = model.Layers.Append(model.Layers[0]).ToList() };
        using var vlm = TinyVlm.Create(11);
        StringAssert.Contains(Assert.ThrowsExactly<MsavqFormatException>(() => StoredWeights.Write(vlm, twice, "in memory")).Reason, "stored twice");
    }

    [TestMethod]
    public void NonFiniteScalesOrCodebooks_AreRejected()
    {
        var msavq = Files.TryGetValue(QuantizationMethod.Msavq, out var b) ? b : Quantized(QuantizationMethod.Msavq).Bytes;
        var rtn = Files.TryGetValue(QuantizationMethod.Rtn, out var r) ? r : Quantized(QuantizationMethod.Rtn).Bytes;
        var ml = new MLContext(0);
        var fp16 = QuantizedModelFile.ToBytes(TinyChain.Fit(ml, QuantizationMethod.Gptvq, 3.5, TinyVlm.Create(11), CalibrationMode.OneShot,
            sensitivity: s => s.Precision = CodebookPrecision.Float16).LastTransformer.Quantized);
        Assert.IsFalse(QuantizedModelFile.FromBytes(fp16, "fp16.msavq").Layers[0].Int8Codebooks);
        foreach (ushort bits in new ushort[] { 0x7E00, 0x7C00, 0xFC00 })   // NaN, +∞, −∞ as fp16
            foreach (var (file, tensor) in new[] { (msavq, "layers.0.codebook_scales"), (rtn, "layers.2.scales"), (fp16, "layers.1.codebooks") })
            {
                var bad = WithTensor(file, tensor, data => System.Buffers.Binary.BinaryPrimitives.WriteUInt16LittleEndian(data.AsSpan(2), bits));
                var e = Assert.ThrowsExactly<MsavqFormatException>(() => QuantizedModelFile.FromBytes(bad, "model.msavq"), $"{tensor} = 0x{bits:X4}");
                StringAssert.Contains(e.Reason, "non-finite");
                StringAssert.Contains(e.Reason, tensor);
            }
    }

    /// <summary>The same file with one tensor's bytes edited and its checksum recomputed.</summary>
    private static byte[] WithTensor(byte[] bytes, string tensor, Action<byte[]> edit)
    {
        int n = (int)System.Buffers.Binary.BinaryPrimitives.ReadUInt64LittleEndian(bytes);
        var header = System.Text.Json.Nodes.JsonNode.Parse(bytes.AsSpan(8, n))!.AsObject();
        var offsets = header[tensor]!["data_offsets"]!.AsArray();
        int begin = 8 + n + (int)offsets[0]!.GetValue<long>(), end = 8 + n + (int)offsets[1]!.GetValue<long>();
        var copy = (byte[])bytes.Clone();
        var data = copy[begin..end];
        edit(data);
        data.CopyTo(copy, begin);
        return WithManifest(copy, m => m["checksums"]![tensor] =
            Convert.ToHexString(System.Security.Cryptography.SHA256.HashData(data)).ToLowerInvariant());
    }

    /// <summary>The same file with its manifest edited and its checksum recomputed: a well-formed file that lies.</summary>
    private static byte[] WithManifest(byte[] bytes, Action<System.Text.Json.Nodes.JsonObject> edit)
    {
        int n = (int)System.Buffers.Binary.BinaryPrimitives.ReadUInt64LittleEndian(bytes);
        var header = System.Text.Json.Nodes.JsonNode.Parse(bytes.AsSpan(8, n))!.AsObject();
        var meta = header["__metadata__"]!.AsObject();
        var manifest = System.Text.Json.Nodes.JsonNode.Parse(meta["manifest"]!.GetValue<string>())!.AsObject();
        edit(manifest);
        string text = manifest.ToJsonString();
        meta["manifest"] = text;
        meta["manifest_sha256"] = Convert.ToHexString(System.Security.Cryptography.SHA256.HashData(System.Text.Encoding.UTF8.GetBytes(text))).ToLowerInvariant();
        var h = System.Text.Encoding.UTF8.GetBytes(header.ToJsonString());
        int pad = (8 - h.Length % 8) % 8;
        var result = new byte[8 + h.Length + pad + bytes.Length - 8 - n];
        System.Buffers.Binary.BinaryPrimitives.WriteUInt64LittleEndian(result, (ulong)(h.Length + pad));
        h.CopyTo(result, 8);
        for (int i = 0; i < pad; i++) result[8 + h.Length + i] = (byte)' ';
        bytes.AsSpan(8 + n).CopyTo(result.AsSpan(8 + h.Length + pad));
        return result;
    }

    [TestMethod]
    public void TenThousandRandomCorruptions_NeverEscapeAsAnotherException()
    {
        var bytes = Files.TryGetValue(QuantizationMethod.Gptvq, out var b) ? b : Quantized(QuantizationMethod.Gptvq).Bytes;
        var original = QuantizedModelFile.FromBytes(bytes, "original.msavq");
        var rng = new Random(12345);
        int rejected = 0, harmless = 0;
        for (int trial = 0; trial < 10_000; trial++)
        {
            var c = (byte[])bytes.Clone();
            switch (trial % 4)
            {
                case 0: c[rng.Next(c.Length)] ^= (byte)(1 << rng.Next(8)); break;                 // one flipped bit
                case 1: c = c[..rng.Next(c.Length)]; break;                                        // truncation
                case 2: for (int k = 0; k < 8; k++) c[rng.Next(c.Length)] = (byte)rng.Next(256); break; // scattered garbage
                default: c[8 + rng.Next(Math.Min(c.Length - 8, 4000))] = (byte)rng.Next(32, 127); break; // header text
            }
            QuantizedModel loaded;
            try
            {
                loaded = QuantizedModelFile.FromBytes(c, "fuzz.msavq");
            }
            catch (MsavqFormatException) { rejected++; continue; }
            // Accepted: then it must be the same model (a change in header padding or JSON spacing), never garbage.
            Assert.AreEqual(original.Method, loaded.Method, $"trial {trial}");
            Assert.AreEqual(original.Layers.Count, loaded.Layers.Count, $"trial {trial}");
            for (int i = 0; i < original.Layers.Count; i++)
            {
                Assert.AreEqual(original.Layers[i].Name, loaded.Layers[i].Name, $"trial {trial}");
                Assert.IsTrue(original.Layers[i].Dequantize().AsSpan().SequenceEqual(loaded.Layers[i].Dequantize()), $"trial {trial}");
            }
            harmless++;
        }
        Assert.AreEqual(10_000, rejected + harmless);
        Assert.IsTrue(rejected > 9_000, $"{rejected} of 10,000 rejected, {harmless} harmless");
    }
}
