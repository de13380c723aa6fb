using SkiaSharp;

namespace Msavq.Bench.Curves;

/// <summary>
/// Printed text lines for the PP-OCRv4 curves: Brown sentences word-wrapped into lines of at most
/// <see cref="MaxCharacters"/> characters, as a page prints them, and drawn black on white with SkiaSharp in fonts
/// from Debian's packages (bench/scripts/install-ocr-fonts.sh), <see cref="Height"/> pixels high.
/// </summary>
public static class TextLines
{
    public const int MaxCharacters = 40;
    public const int Height = 48;
    private const float FontSize = 30, Baseline = 35, Margin = 6;

    /// <summary>The fonts, one per Debian package: a sans, a serif and another sans of different design.</summary>
    public static readonly string[] Fonts =
    [
        "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf",
        "/usr/share/fonts/truetype/liberation2/LiberationSerif-Regular.ttf",
        "/usr/share/fonts/truetype/freefont/FreeSans.ttf",
    ];

    /// <summary>Each sentence's words, greedily filled into lines of ≤ <see cref="MaxCharacters"/> characters (a longer word is cut); lines of fewer than 2 characters are dropped.</summary>
    public static List<string> Wrap(IEnumerable<string> sentences)
    {
        var lines = new List<string>();
        foreach (var sentence in sentences)
        {
            string line = "";
            foreach (var word in sentence.Split(' ', StringSplitOptions.RemoveEmptyEntries))
            {
                for (string w = word; w.Length > 0;)
                {
                    string piece = w.Length > MaxCharacters ? w[..MaxCharacters] : w;
                    w = w[piece.Length..];
                    if (line.Length == 0) line = piece;
                    else if (line.Length + 1 + piece.Length <= MaxCharacters) line += " " + piece;
                    else { lines.Add(line); line = piece; }
                }
            }
            if (line.Length > 0) lines.Add(line);
        }
        return lines.Where(l => l.Length >= 2).ToList();
    }

    /// <summary>The typefaces of <see cref="Fonts"/>, installing the packages first when a file is missing.</summary>
    public static SKTypeface[] LoadFonts()
    {
        InstallScript.Ensure("install-ocr-fonts.sh", () => Fonts.All(File.Exists), $"A font of {string.Join(", ", Fonts)}");
        return Fonts.Select(f => SKTypeface.FromFile(f) ?? throw new InvalidDataException($"{f} is not a font SkiaSharp reads.")).ToArray();
    }

    /// <summary>
    /// <paramref name="text"/> in <paramref name="font"/>, black on white, as raw RGB bytes of <see cref="Height"/> ×
    /// <paramref name="width"/>: left-aligned, squeezed horizontally where it would not fit (as PaddleOCR's resize
    /// squeezes a line wider than its input).
    /// </summary>
    public static byte[] Render(string text, SKTypeface font, int width)
    {
        using var bitmap = new SKBitmap(new SKImageInfo(width, Height, SKColorType.Rgba8888, SKAlphaType.Unpremul));
        using (var canvas = new SKCanvas(bitmap))
        {
            canvas.Clear(SKColors.White);
            using var f = new SKFont(font, FontSize) { Subpixel = true };
            using var paint = new SKPaint { Color = SKColors.Black, IsAntialias = true };
            float measured = f.MeasureText(text), room = width - 2 * Margin;
            if (measured > room) f.ScaleX = room / measured;
            canvas.DrawText(text, Margin, Baseline, f, paint);
        }
        var rgba = bitmap.GetPixelSpan();
        var rgb = new byte[Height * width * 3];
        for (int p = 0; p < Height * width; p++)
            for (int c = 0; c < 3; c++) rgb[p * 3 + c] = rgba[p * 4 + c];
        return rgb;
    }
}
