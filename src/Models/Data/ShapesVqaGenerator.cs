namespace Msavq.MLNet.Data;

/// <summary>The six question families of Shapes-VQA.</summary>
public enum QuestionFamily
{
    ColorOfShape, ShapeOfColor, CountOfShape, Exists, Spatial,
    /// <summary>Compositional: filter by colour, then count.</summary>
    CountOfColor,
}

/// <summary>One visual question with its rendered scene.</summary>
public sealed record VqaExample(byte[] Image, string Question, string Answer, QuestionFamily Family, ShapesScene Scene);

/// <summary>
/// Deterministic Shapes-VQA generator: scenes built backwards from a balanced answer, then rendered.
/// Families take turns, and within a family the answers cycle, so every family is exactly balanced over each
/// full cycle of its answers. The same seed gives the same examples, byte for byte.
/// </summary>
public sealed class ShapesVqaGenerator
{
    private readonly Random _rng;
    private readonly int[] _perFamily = new int[FamilyCount];
    private readonly QuestionFamily[] _families;
    private long _index;

    public static readonly int FamilyCount = Enum.GetValues<QuestionFamily>().Length;

    /// <param name="seed">Seed of the stream.</param>
    /// <param name="maxObjects">Most objects per scene (1..<see cref="ShapesWorld.MaxObjects"/>); lower for a curriculum.</param>
    /// <param name="families">The families to cycle through (default: all six, in order).</param>
    public ShapesVqaGenerator(int seed, int maxObjects = ShapesWorld.MaxObjects, IReadOnlyList<QuestionFamily>? families = null)
    {
        _rng = new Random(seed);
        MaxObjects = maxObjects;
        _families = families?.Distinct().ToArray() ?? Enum.GetValues<QuestionFamily>();
        if (_families.Length == 0) throw new ArgumentException("At least one question family is needed.", nameof(families));
    }

    /// <summary>Most objects per scene; may be raised between calls (curriculum).</summary>
    public int MaxObjects
    {
        get => _max;
        set
        {
            if (value < 2 || value > ShapesWorld.MaxObjects)
                throw new ArgumentOutOfRangeException(nameof(value), $"maxObjects must be in 2..{ShapesWorld.MaxObjects}.");
            _max = value;
        }
    }
    private int _max;

    /// <summary>The closed answer set of a family.</summary>
    public static IReadOnlyList<string> AnswersOf(QuestionFamily family) => family switch
    {
        QuestionFamily.ColorOfShape => ShapesWorld.Colors,
        QuestionFamily.ShapeOfColor => ShapesWorld.Shapes,
        QuestionFamily.CountOfShape or QuestionFamily.CountOfColor => ShapesWorld.Numbers,
        _ => YesNo,
    };
    private static readonly string[] YesNo = { "yes", "no" };

    /// <summary>Snake-case family name as shown in reports.</summary>
    public static string NameOf(QuestionFamily family) => family switch
    {
        QuestionFamily.ColorOfShape => "color_of_shape",
        QuestionFamily.ShapeOfColor => "shape_of_color",
        QuestionFamily.CountOfShape => "count_of_shape",
        QuestionFamily.Exists => "exists",
        QuestionFamily.Spatial => "spatial",
        _ => "count_of_color",
    };

    public VqaExample Next()
    {
        var family = _families[_index++ % _families.Length];
        var answers = AnswersOf(family);
        int answer = _perFamily[(int)family]++ % answers.Count;
        var cells = Enumerable.Range(0, ShapesWorld.GridSize * ShapesWorld.GridSize).ToArray();
        _rng.Shuffle(cells);
        var b = new SceneBuilder(cells);
        string question;
        int shapes = ShapesWorld.Shapes.Length, colors = ShapesWorld.Colors.Length;

        switch (family)
        {
            case QuestionFamily.ColorOfShape:
            {
                int s = _rng.Next(shapes);
                b.Add(s, answer, Large());
                FillOthers(b, _rng.Next(1, _max + 1), (sh, _) => sh != s);
                question = $"what color is the {ShapesWorld.Shapes[s]}?";
                break;
            }
            case QuestionFamily.ShapeOfColor:
            {
                int c = _rng.Next(colors);
                b.Add(answer, c, Large());
                FillOthers(b, _rng.Next(1, _max + 1), (_, co) => co != c);
                question = $"what shape is the {ShapesWorld.Colors[c]} object?";
                break;
            }
            case QuestionFamily.CountOfShape:
            {
                int s = _rng.Next(shapes);
                for (int i = 0; i < answer; i++) b.Add(s, _rng.Next(colors), Large());
                FillOthers(b, _rng.Next(Math.Max(answer, 1), _max + 1), (sh, _) => sh != s);
                question = $"how many {ShapesWorld.ShapePlurals[s]} are there?";
                break;
            }
            case QuestionFamily.CountOfColor:
            {
                int c = _rng.Next(colors);
                for (int i = 0; i < answer; i++) b.Add(_rng.Next(shapes), c, Large());
                FillOthers(b, _rng.Next(Math.Max(answer, 1), _max + 1), (_, co) => co != c);
                question = $"how many {ShapesWorld.Colors[c]} objects are there?";
                break;
            }
            case QuestionFamily.Exists:
            {
                int s = _rng.Next(shapes), c = _rng.Next(colors);
                bool yes = answer == 0;
                if (yes) b.Add(s, c, Large());
                FillOthers(b, _rng.Next(1, _max + 1), (sh, co) => sh != s || co != c);
                question = $"is there a {ShapesWorld.Colors[c]} {ShapesWorld.Shapes[s]}?";
                break;
            }
            default:
            {
                bool yes = answer == 0;
                int rel = _rng.Next(ShapesWorld.Relations.Length);
                int sa = _rng.Next(shapes), ca = _rng.Next(colors), sb, cb;
                do { sb = _rng.Next(shapes); cb = _rng.Next(colors); } while (sb == sa && cb == ca);
                // Two cells that differ along the axis the relation asks about.
                int cellA = b.FreeCell(_ => true);
                int cellB = b.FreeCell(c => Separated(cellA, c, rel));
                if (Holds(cellA, cellB, rel) != yes) (cellA, cellB) = (cellB, cellA);
                b.AddAt(sa, ca, Large(), cellA);
                b.AddAt(sb, cb, Large(), cellB);
                FillOthers(b, _rng.Next(2, _max + 1), (sh, co) => !(sh == sa && co == ca) && !(sh == sb && co == cb));
                string phrase = rel switch { 0 => "left of", 1 => "right of", 2 => "above", _ => "below" };
                question = $"is the {ShapesWorld.Colors[ca]} {ShapesWorld.Shapes[sa]} {phrase} the " +
                           $"{ShapesWorld.Colors[cb]} {ShapesWorld.Shapes[sb]}?";
                break;
            }
        }

        var scene = new ShapesScene(b.Objects);
        var image = ShapesRenderer.Render(scene, _rng);
        return new VqaExample(image, question, answers[answer], family, scene);
    }

    /// <summary>Generates the next <paramref name="count"/> examples.</summary>
    public IEnumerable<VqaExample> Take(int count)
    {
        for (int i = 0; i < count; i++) yield return Next();
    }

    private bool Large() => _rng.Next(2) == 1;

    private void FillOthers(SceneBuilder b, int total, Func<int, int, bool> allowed)
    {
        while (b.Objects.Count < total && b.CellsLeft > 0)
        {
            int s = _rng.Next(ShapesWorld.Shapes.Length), c = _rng.Next(ShapesWorld.Colors.Length);
            if (allowed(s, c)) b.Add(s, c, Large());
        }
    }

    private static (int Row, int Col) Rc(int cell) => (cell / ShapesWorld.GridSize, cell % ShapesWorld.GridSize);

    private static bool Separated(int a, int b, int rel) =>
        rel < 2 ? Rc(a).Col != Rc(b).Col : Rc(a).Row != Rc(b).Row;

    /// <summary>Whether "object in cell a is REL object in cell b" holds (strictly, by grid cell).</summary>
    private static bool Holds(int a, int b, int rel) => rel switch
    {
        0 => Rc(a).Col < Rc(b).Col,
        1 => Rc(a).Col > Rc(b).Col,
        2 => Rc(a).Row < Rc(b).Row,
        _ => Rc(a).Row > Rc(b).Row,
    };

    private sealed class SceneBuilder(int[] cells)
    {
        private readonly HashSet<int> _used = new();
        public List<ShapesObject> Objects { get; } = new();
        public int CellsLeft => cells.Length - _used.Count;

        /// <summary>The first free cell, in the scene's shuffled order, that satisfies <paramref name="ok"/>.</summary>
        public int FreeCell(Func<int, bool> ok) => cells.First(c => !_used.Contains(c) && ok(c));

        public void Add(int shape, int color, bool large) => AddAt(shape, color, large, FreeCell(_ => true));

        public void AddAt(int shape, int color, bool large, int cell)
        {
            _used.Add(cell);
            Objects.Add(new ShapesObject(shape, color, large, cell / ShapesWorld.GridSize, cell % ShapesWorld.GridSize));
        }
    }
}
