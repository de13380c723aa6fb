using System.Diagnostics;
using System.Globalization;
using Msavq.MLNet;
using Msavq.MLNet.Data;
using Msavq.MLNet.Models;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;
using F = TorchSharp.torch.nn.functional;

namespace Msavq.Cli.Training;

/// <summary>One evaluation point of the learning curve.</summary>
/// <param name="ReferentLoss">Smoothed loss of the referent probe (NaN before any spatial question).</param>
/// <param name="RelationLoss">Smoothed loss of the relation probe (NaN when off): ln 4 + ln 4 ≈ 2.77 is chance.</param>
public sealed record CurvePoint(double Minutes, long Step, double Loss, VqaEvaluation Validation,
                                double ReferentLoss = double.NaN, double RelationLoss = double.NaN);

/// <summary>
/// Trains <see cref="ShapesVlm"/> from scratch (or from a checkpoint's weights) on the Shapes-VQA train stream:
/// answer-token cross-entropy plus an auxiliary per-cell shape/colour loss on the image tokens (grounding,
/// reference-vlm.md §What to try 1), AdamW with warm-up and a cosine schedule over the budget (steps, or wall clock:
/// <see cref="TrainingOptions.Steps"/>), an object curriculum; after <see cref="TrainingOptions.FocusAfterSteps"/> (or
/// <see cref="TrainingOptions.FocusAfterMinutes"/>) one family (spatial) is oversampled. Two probes ground spatial
/// questions: at the middle of the decoder, the cell of each object the question names; one block before the last, at
/// the answering position, both objects' rows and columns and the relation asked (without that probe, spatial stayed
/// at chance even with the positions decodable: bench/RESULTS.md). Checkpoints every evaluation and at the end of the
/// budget, resumable.
/// </summary>
public sealed class ShapesVlmTrainer
{
    private readonly TrainingOptions _o;
    public ShapesVlmTrainer(TrainingOptions options) => _o = options;

    public string LastCheckpoint => Path.Combine(_o.OutputDirectory, "last.ckpt");
    public string BestCheckpoint => Path.Combine(_o.OutputDirectory, "best.ckpt");
    private string StatePath => Path.Combine(_o.OutputDirectory, "trainer.state");
    public string CurvePath => Path.Combine(_o.OutputDirectory, "curve.csv");

    /// <param name="onStep">Called after each step with (fraction of budget done, step, smoothed loss).</param>
    /// <param name="onEval">Called after each evaluation.</param>
    public void Train(Action<double, long, double> onStep, Action<CurvePoint> onEval, CancellationToken cancel)
    {
        Directory.CreateDirectory(_o.OutputDirectory);
        torch.set_num_threads(_o.Threads);
        torch.random.manual_seed(_o.Seed);
        var model = new ShapesVlm(new ShapesVlmConfig { ImageGridPositions = _o.ImageGridPositions });
        var c = model.Config;
        var shapeHead = nn.Linear(c.VisionWidth, ShapesWorld.Shapes.Length + 1);
        var colorHead = nn.Linear(c.VisionWidth, ShapesWorld.Colors.Length + 1);
        var parameters = model.parameters().Concat(shapeHead.parameters()).Concat(colorHead.parameters()).ToList();
        var optimizer = optim.AdamW(parameters, lr: _o.LearningRate, weight_decay: _o.WeightDecay);
        // Referent grounding: at the word naming each object of a spatial question, predict that object's cell.
        var refHead = nn.Linear(c.TextWidth, ShapesWorld.GridSize * ShapesWorld.GridSize);
        var refOptimizer = optim.AdamW(refHead.parameters(), lr: _o.LearningRate, weight_decay: _o.WeightDecay);
        // Relation grounding: at the position that answers a spatial question, one block before the last, predict the
        // row and column of both named objects and the relation asked — what the last block needs to compare.
        int grid = ShapesWorld.GridSize, relations = ShapesWorld.Relations.Length;
        var answerHead = nn.Linear(c.TextWidth, 4 * grid + relations);
        var answerOptimizer = optim.AdamW(answerHead.parameters(), lr: _o.LearningRate, weight_decay: _o.WeightDecay);
        int referentTap = c.TextLayers / 2 - 1, answerTap = c.TextLayers - 2;

        long step = 0; double elapsedBefore = 0, best = -1; int resumes = 0;
        if (_o.Resume && File.Exists(StatePath) && File.Exists(LastCheckpoint))
        {
            using var trained = ShapesVlmCheckpoint.Load(LastCheckpoint);
            if (CopyWeights(trained, model).Count > 0)
                throw new InvalidOperationException($"{LastCheckpoint} was trained with other options (--no-grid-positions?); resume with the same ones.");
            using var r = new BinaryReader(File.OpenRead(StatePath));
            step = r.ReadInt64(); elapsedBefore = r.ReadDouble(); best = r.ReadDouble(); resumes = r.ReadInt32() + 1;
            shapeHead.load(r); colorHead.load(r);
            optimizer.load_state_dict(r);
            if (r.BaseStream.Position < r.BaseStream.Length) { refHead.load(r); refOptimizer.load_state_dict(r); }
            if (r.BaseStream.Position < r.BaseStream.Length) { answerHead.load(r); answerOptimizer.load_state_dict(r); }
        }
        else
        {
            if (File.Exists(CurvePath)) File.Delete(CurvePath);
            if (_o.InitFrom is { } init)
            {
                using var start = init == "pretrained" ? ShapesVlm.LoadPretrained() : ShapesVlmCheckpoint.Load(init);
                var fresh = CopyWeights(start, model);
                // Parameters the start lacks (the image grid embeddings) keep their fresh initialisation.
                if (fresh.Count > 0) Console.Error.WriteLine($"not in {init}, initialised fresh: {string.Join(", ", fresh)}");
            }
        }

        var validation = new ShapesVqaGenerator(ShapesVqa.SeedOf(ShapesVqaSplit.Validation)).Take(_o.EvalQuestions).ToList();
        // A fresh stream per resume, so a resumed run does not replay the examples it has already seen.
        var train = new ShapesVqaGenerator(ShapesVqa.SeedOf(ShapesVqaSplit.Train) + 7919 * resumes,
            maxObjects: _o.CurriculumStartObjects, families: _o.Families);
        var focus = _o.FocusFamily is { } ff
            ? new ShapesVqaGenerator(ShapesVqa.SeedOf(ShapesVqaSplit.Train) + 104729 * (resumes + 1), maxObjects: _o.CurriculumStartObjects, families: new[] { ff })
            : null;
        int focusRows = focus is null ? 0 : (int)Math.Round(_o.BatchSize * Math.Clamp(_o.FocusShare, 0, 1));
        var clock = Stopwatch.StartNew();
        double Elapsed() => elapsedBefore + clock.Elapsed.TotalSeconds;
        // The budget the schedule, the curriculum, the focus and the evaluations are laid over: steps under a step
        // budget, so that a run does the same however fast the machine is; otherwise seconds of wall clock.
        bool bySteps = _o.Steps is not null;
        double Spent() => bySteps ? step : Elapsed();
        double budget = _o.Steps ?? _o.Minutes * 60;
        double evalEvery = bySteps ? _o.EvalEverySteps : _o.EvalEveryMinutes * 60;
        double focusAfter = bySteps ? _o.FocusAfterSteps : _o.FocusAfterMinutes * 60;
        double nextEval = (Math.Floor(Spent() / evalEvery) + 1) * evalEvery;
        double smooth = double.NaN, refSmooth = double.NaN, relSmooth = double.NaN;
        static double Smooth(double s, double x) => double.IsNaN(x) ? s : double.IsNaN(s) ? x : 0.98 * s + 0.02 * x;
        model.train();

        while (Spent() < budget && !cancel.IsCancellationRequested)
        {
            double frac = Spent() / budget;
            int start = _o.CurriculumStartObjects;
            train.MaxObjects = Math.Clamp(start + (int)((ShapesWorld.MaxObjects - start + 1) * frac / _o.CurriculumFraction),
                                          start, ShapesWorld.MaxObjects);
            if (focus is not null) focus.MaxObjects = train.MaxObjects;
            double lr = step < _o.WarmupSteps
                ? _o.LearningRate * (step + 1) / _o.WarmupSteps
                : _o.MinLearningRate + 0.5 * (_o.LearningRate - _o.MinLearningRate) * (1 + Math.Cos(Math.PI * Math.Min(frac, 1)));
            foreach (var g in optimizer.ParamGroups) g.LearningRate = lr;

            double lossValue, refValue = double.NaN, relValue = double.NaN;
            using (var scope = NewDisposeScope())
            {
                int fr = Spent() >= focusAfter ? focusRows : 0;
                var examples = train.Take(_o.BatchSize - fr).Concat(focus?.Take(fr) ?? []).ToList();
                using var batch = model.Encode(examples.Select(e => new ModelRow(e.Image, e.Question, e.Answer)).ToList());
                var features = model.EncodeImage(batch.Pixels);
                // The referent probe reads the middle of the decoder: the object's cell must be known there for later
                // blocks to compare two of them (a probe on the last block would not force that).
                var (hidden, taps) = model.DecodeHidden(features, batch.Tokens, new[] { referentTap, answerTap });
                var logits = model.Head(hidden);
                var loss = ShapesVlm.LossFromLogits(logits, batch);
                var (cellShape, cellColor) = CellTargets(examples);
                var aux = F.cross_entropy(shapeHead.call(features).reshape(-1, shapeHead.out_features), cellShape.reshape(-1))
                        + F.cross_entropy(colorHead.call(features).reshape(-1, colorHead.out_features), cellColor.reshape(-1));
                var total = loss + _o.AuxiliaryWeight * aux;
                var (refRows, refPositions, refCells) = ReferentTargets(examples, c.ImageTokens);
                if (refRows.Length > 0)
                {
                    var picked = taps[0].index(TensorIndex.Tensor(tensor(refRows)), TensorIndex.Tensor(tensor(refPositions)));
                    var refLoss = F.cross_entropy(refHead.call(picked), tensor(refCells));
                    refValue = refLoss.item<float>();
                    total = total + _o.AuxiliaryWeight * refLoss;
                }
                var (relRows, relTargets, relKinds) = _o.RelationProbe ? RelationTargets(examples) : ([], [], []);
                if (relRows.Length > 0)
                {
                    var at = tensor(relRows.Select(i => batch.AnswerPositions[i]).ToArray());
                    var picked = answerHead.call(taps[1].index(TensorIndex.Tensor(tensor(relRows)), TensorIndex.Tensor(at)));
                    var cells = picked[.., ..(4 * grid)].reshape(-1, grid);              // [n·4, g]: rowA, colA, rowB, colB
                    var relLoss = F.cross_entropy(cells, tensor(relTargets))
                                + F.cross_entropy(picked[.., (4 * grid)..], tensor(relKinds));
                    relValue = relLoss.item<float>();
                    total = total + _o.AuxiliaryWeight * relLoss;
                }
                optimizer.zero_grad();
                refOptimizer.zero_grad();
                answerOptimizer.zero_grad();
                total.backward();
                nn.utils.clip_grad_norm_(parameters, 1.0);
                optimizer.step();
                refOptimizer.step();
                answerOptimizer.step();
                lossValue = loss.item<float>();
            }
            step++;
            smooth = Smooth(smooth, lossValue);
            refSmooth = Smooth(refSmooth, refValue);
            relSmooth = Smooth(relSmooth, relValue);
            onStep(Math.Min(Spent() / budget, 1), step, smooth);

            bool last = Spent() >= budget || cancel.IsCancellationRequested;
            if (Spent() >= nextEval || last)
            {
                nextEval += evalEvery;
                model.eval();
                var eval = VqaEvaluator.Evaluate(model, validation);
                model.train();
                var point = new CurvePoint(Elapsed() / 60, step, smooth, eval, refSmooth, relSmooth);
                AppendCurve(point);
                ShapesVlmCheckpoint.Save(model, LastCheckpoint);
                if (eval.Accuracy > best) { best = eval.Accuracy; ShapesVlmCheckpoint.Save(model, BestCheckpoint); }
                SaveState(step, Elapsed(), best, resumes, shapeHead, colorHead, optimizer, refHead, refOptimizer, answerHead, answerOptimizer);
                onEval(point);
            }
        }
    }

    /// <summary>Copies every parameter of <paramref name="from"/> into the one of the same name and shape; returns the names of <paramref name="to"/> left untouched.</summary>
    private static List<string> CopyWeights(ShapesVlm from, ShapesVlm to)
    {
        var source = from.named_parameters().ToDictionary(p => p.name, p => p.parameter);
        var untouched = new List<string>();
        using var _ = no_grad();
        foreach (var (name, p) in to.named_parameters())
        {
            if (source.Remove(name, out var q))
            {
                if (!q.shape.SequenceEqual(p.shape))
                    throw new InvalidOperationException($"Parameter '{name}' has shape [{string.Join(",", q.shape)}] in the start checkpoint, [{string.Join(",", p.shape)}] here.");
                p.copy_(q);
            }
            else untouched.Add(name);
        }
        if (source.Count > 0)
            throw new InvalidOperationException($"The start checkpoint has parameters this model lacks: {string.Join(", ", source.Keys)}.");
        return untouched;
    }

    private static (Tensor Shape, Tensor Color) CellTargets(IReadOnlyList<VqaExample> examples)
    {
        int cells = ShapesWorld.GridSize * ShapesWorld.GridSize;
        var s = new long[examples.Count * cells];
        var k = new long[examples.Count * cells];
        for (int i = 0; i < examples.Count; i++)
        {
            var (shape, color) = examples[i].Scene.CellLabels();
            for (int j = 0; j < cells; j++) { s[i * cells + j] = shape[j]; k[i * cells + j] = color[j]; }
        }
        return (tensor(s, new long[] { examples.Count, cells }), tensor(k, new long[] { examples.Count, cells }));
    }

    /// <summary>
    /// For spatial questions ("is the C1 S1 REL the C2 S2?"): the full-sequence positions of the two shape words and
    /// the cells of the objects they name.
    /// </summary>
    private static (long[] Rows, long[] Positions, long[] Cells) ReferentTargets(IReadOnlyList<VqaExample> examples, int imageTokens)
    {
        var rows = new List<long>(); var pos = new List<long>(); var cells = new List<long>();
        for (int i = 0; i < examples.Count; i++)
        {
            var e = examples[i];
            if (e.Family != QuestionFamily.Spatial) continue;
            foreach (var (at, o) in Referents(e).Objects)
            {
                rows.Add(i);
                pos.Add(at + 1 + imageTokens); // text index = word index + 1 (bos); full position adds the image tokens
                cells.Add(o.Row * ShapesWorld.GridSize + o.Column);
            }
        }
        return (rows.ToArray(), pos.ToArray(), cells.ToArray());
    }

    /// <summary>
    /// Parses a spatial question "is the C1 S1 REL the C2 S2?": the relation's index, and the word index of each shape
    /// word with the object it names (unique in the scene by construction).
    /// </summary>
    private static (int Relation, (int WordIndex, ShapesObject Object)[] Objects) Referents(VqaExample e)
    {
        var words = e.Question.Replace("?", " ?").Split(' ', StringSplitOptions.RemoveEmptyEntries);
        var objects = new[] { 3, words.Length - 2 }.Select(at =>
        {
            int color = Array.IndexOf(ShapesWorld.Colors, words[at - 1]), shape = Array.IndexOf(ShapesWorld.Shapes, words[at]);
            return (at, e.Scene.Objects.Single(x => x.Color == color && x.Shape == shape));
        }).ToArray();
        return (Array.IndexOf(ShapesWorld.Relations, words[4]), objects);
    }

    /// <summary>
    /// For spatial questions: the row and column of the first and the second named object (4 targets per row), and
    /// the relation asked (one per row).
    /// </summary>
    private static (long[] Rows, long[] Targets, long[] Relations) RelationTargets(IReadOnlyList<VqaExample> examples)
    {
        var rows = new List<long>(); var targets = new List<long>(); var relations = new List<long>();
        for (int i = 0; i < examples.Count; i++)
        {
            var e = examples[i];
            if (e.Family != QuestionFamily.Spatial) continue;
            var (relation, objects) = Referents(e);
            rows.Add(i);
            relations.Add(relation);
            foreach (var (_, o) in objects)
            {
                targets.Add(o.Row);
                targets.Add(o.Column);
            }
        }
        return (rows.ToArray(), targets.ToArray(), relations.ToArray());
    }

    private void SaveState(long step, double elapsed, double best, int resumes, Linear shapeHead, Linear colorHead,
                           OptimizerHelper optimizer, Linear refHead, OptimizerHelper refOptimizer, Linear answerHead, OptimizerHelper answerOptimizer)
    {
        using var ms = new MemoryStream();
        using (var w = new BinaryWriter(ms, System.Text.Encoding.UTF8, leaveOpen: true))
        {
            w.Write(step); w.Write(elapsed); w.Write(best); w.Write(resumes);
            shapeHead.save(w); colorHead.save(w);
            optimizer.save_state_dict(w);
            refHead.save(w);
            refOptimizer.save_state_dict(w);
            answerHead.save(w);
            answerOptimizer.save_state_dict(w);
        }
        AtomicFile.Write(StatePath, ms.ToArray());
    }

    private void AppendCurve(CurvePoint p)
    {
        bool header = !File.Exists(CurvePath);
        using var w = File.AppendText(CurvePath);
        var families = Enum.GetValues<QuestionFamily>();
        if (header)
            w.WriteLine("minutes,step,train_loss,val_accuracy,val_nll," + string.Join(",", families.Select(ShapesVqaGenerator.NameOf)));
        var inv = CultureInfo.InvariantCulture;
        w.WriteLine(string.Join(",", new[]
        {
            p.Minutes.ToString("F1", inv), p.Step.ToString(inv), p.Loss.ToString("F4", inv),
            p.Validation.Accuracy.ToString("F4", inv), p.Validation.AnswerNll.ToString("F4", inv),
        }.Concat(families.Select(f => p.Validation.FamilyAccuracy.GetValueOrDefault(f).ToString("F4", inv)))));
    }
}
