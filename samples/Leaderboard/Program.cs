// A Model-Builder-style experiment: the same MSAVQ chain with every method preset at several budgets, scored on
// held-out questions, printed as a leaderboard DataFrame. Run: dotnet run --project samples/Leaderboard -c Release
using Microsoft.Data.Analysis;
using Microsoft.ML;
using Microsoft.ML.Data;
using Msavq.MLNet;
using Msavq.MLNet.Data;
using Msavq.MLNet.Models;

var ml = new MLContext(seed: 0);
var vlm = ShapesVlm.LoadPretrained();
IDataView calibration = ShapesVqa.Generate(ml, ShapesVqaSplit.Train, count: 64);
IDataView test = ShapesVqa.Generate(ml, ShapesVqaSplit.Validation, count: 300);
string[] truth = test.GetColumn<string>("Answer").ToArray();

// Full-precision answers: the quantized models are scored on accuracy and on agreement with these.
string[] fpAnswers = Predict(vlm);

// Statistics are collected once; every candidate fits only the last two estimators on the carried view.
var collected = ml.Msavq().CollectCalibration(vlm).Fit(calibration).Transform(calibration);
var method = new StringDataFrameColumn("Method");
var budget = new DoubleDataFrameColumn("Budget");
var bits = new DoubleDataFrameColumn("BitsPerWeight");
var accuracy = new DoubleDataFrameColumn("Accuracy");
var agreement = new DoubleDataFrameColumn("AgreementWithFp");
foreach (double b in new[] { 2.25, 3.0 })
    foreach (var m in Enum.GetValues<QuantizationMethod>())
    {
        var sensitivity = ml.Msavq().EstimateSensitivity(targetBitsPerWeight: b, method: m).Fit(collected);
        var quantizer = ml.Msavq().QuantizeMixedPrecisionVq().Fit(sensitivity.Transform(collected));
        string[] answers = quantizer.Transform(test).GetColumn<string>(MixedPrecisionVqTransformer.PredictedAnswerColumn).ToArray();
        method.Append(m.ToString()); budget.Append(b); bits.Append(Math.Round(quantizer.BitsPerWeight, 3));
        accuracy.Append(Math.Round(answers.Zip(truth).Average(t => t.First == t.Second ? 1.0 : 0.0), 3));
        agreement.Append(Math.Round(answers.Zip(fpAnswers).Average(t => t.First == t.Second ? 1.0 : 0.0), 3));
        Console.WriteLine($"{m} at ≤ {b}: done");
    }

var leaderboard = new DataFrame(method, budget, bits, accuracy, agreement).OrderByDescending("AgreementWithFp");
Console.WriteLine($"Full precision: accuracy {fpAnswers.Zip(truth).Average(t => t.First == t.Second ? 1.0 : 0.0):P1} on {truth.Length} validation questions");
Console.WriteLine(leaderboard.ToString());

string[] Predict(IVqaModel model)
{
    var rows = ShapesVqa.Rows(300, ShapesVqa.SeedOf(ShapesVqaSplit.Validation)).ToList();
    var answers = new List<string>();
    for (int i = 0; i < rows.Count; i += 100)
    {
        using var batch = model.Encode(rows.Skip(i).Take(100).Select(r => new ModelRow(r.Image, r.Question)).ToList());
        answers.AddRange(model.Predict(batch).Answers);
    }
    return answers.ToArray();
}
