using Msavq.MLNet.Data;

namespace Msavq.MLNet.Tests.Data;

/// <summary>Answers a generated question by parsing it and reading the scene — independent of the generator's logic.</summary>
internal static class SceneOracle
{
    public static string Answer(VqaExample e)
    {
        var w = e.Question.TrimEnd('?').Split(' ');
        var objs = e.Scene.Objects;
        int Shape(string s) => Array.IndexOf(ShapesWorld.Shapes, s) is var i and >= 0 ? i : Array.IndexOf(ShapesWorld.ShapePlurals, s);
        int Color(string s) => Array.IndexOf(ShapesWorld.Colors, s);
        string Num(int n) => ShapesWorld.Numbers[n];
        switch (e.Family)
        {
            case QuestionFamily.ColorOfShape: // what color is the S
                return ShapesWorld.Colors[objs.Single(o => o.Shape == Shape(w[4])).Color];
            case QuestionFamily.ShapeOfColor: // what shape is the C object
                return ShapesWorld.Shapes[objs.Single(o => o.Color == Color(w[4])).Shape];
            case QuestionFamily.CountOfShape: // how many Ss are there
                return Num(objs.Count(o => o.Shape == Shape(w[2])));
            case QuestionFamily.CountOfColor: // how many C objects are there
                return Num(objs.Count(o => o.Color == Color(w[2])));
            case QuestionFamily.Exists: // is there a C S
                return objs.Any(o => o.Color == Color(w[3]) && o.Shape == Shape(w[4])) ? "yes" : "no";
            default: // is the C S (left of|right of|above|below) the C S
            {
                var a = objs.Single(o => o.Color == Color(w[2]) && o.Shape == Shape(w[3]));
                int k = w[4] is "left" or "right" ? 6 : 5;
                var b = objs.Single(o => o.Color == Color(w[k + 1]) && o.Shape == Shape(w[k + 2]));
                bool holds = w[4] switch
                {
                    "left" => a.Column < b.Column, "right" => a.Column > b.Column,
                    "above" => a.Row < b.Row, _ => a.Row > b.Row,
                };
                return holds ? "yes" : "no";
            }
        }
    }
}
