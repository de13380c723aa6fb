namespace Msavq.MLNet.Data;

/// <summary>The closed world of Shapes-VQA: shapes, colours, sizes and the cell grid they sit on.</summary>
public static class ShapesWorld
{
    /// <summary>Image side in pixels (square RGB images).</summary>
    public const int ImageSize = 32;
    /// <summary>Cells per side: objects sit one per cell, so patches of <see cref="CellSize"/> see one object each.</summary>
    public const int GridSize = 4;
    public const int CellSize = ImageSize / GridSize;
    /// <summary>Bytes per image: height × width × RGB.</summary>
    public const int ImageBytes = ImageSize * ImageSize * 3;
    public const int MaxObjects = 6;
    public const int MaxCount = 3;

    public static readonly string[] Shapes = { "circle", "square", "triangle" };
    public static readonly string[] ShapePlurals = { "circles", "squares", "triangles" };
    public static readonly string[] Colors = { "red", "green", "blue", "yellow", "purple", "cyan" };
    public static readonly string[] Numbers = { "zero", "one", "two", "three" };
    public static readonly string[] Relations = { "left", "right", "above", "below" };

    internal static readonly (byte R, byte G, byte B)[] Rgb =
    {
        (230, 40, 40), (40, 200, 60), (50, 90, 240), (235, 220, 40), (170, 60, 210), (40, 215, 225),
    };
}

/// <summary>One object of a scene: what it is and which grid cell holds it.</summary>
public readonly record struct ShapesObject(int Shape, int Color, bool Large, int Row, int Column);

/// <summary>A scene: the objects, in the order they were placed.</summary>
public sealed record ShapesScene(IReadOnlyList<ShapesObject> Objects)
{
    /// <summary>Per-cell labels (row-major, <see cref="ShapesWorld.GridSize"/>² cells): shape+1 and colour+1, 0 when empty.</summary>
    public (int[] Shape, int[] Color) CellLabels()
    {
        int n = ShapesWorld.GridSize * ShapesWorld.GridSize;
        var shape = new int[n];
        var color = new int[n];
        foreach (var o in Objects)
        {
            int c = o.Row * ShapesWorld.GridSize + o.Column;
            shape[c] = o.Shape + 1;
            color[c] = o.Color + 1;
        }
        return (shape, color);
    }
}
