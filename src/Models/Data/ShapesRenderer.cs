using SkiaSharp;

namespace Msavq.MLNet.Data;

/// <summary>Draws a <see cref="ShapesScene"/> into RGB bytes (height × width × 3, row-major).</summary>
public static class ShapesRenderer
{
    public static byte[] Render(ShapesScene scene, Random rng)
    {
        int size = ShapesWorld.ImageSize, cell = ShapesWorld.CellSize;
        var info = new SKImageInfo(size, size, SKColorType.Rgba8888, SKAlphaType.Unpremul);
        using var bitmap = new SKBitmap(info);
        using (var canvas = new SKCanvas(bitmap))
        {
            canvas.Clear(new SKColor(0, 0, 0));
            using var paint = new SKPaint { IsAntialias = true, Style = SKPaintStyle.Fill };
            foreach (var o in scene.Objects)
            {
                var (r, g, b) = ShapesWorld.Rgb[o.Color];
                paint.Color = new SKColor(r, g, b);
                float extent = o.Large ? 7f : 5f;
                // Jitter inside the cell so position is not a fixed pixel pattern.
                float slack = cell - extent;
                float x0 = o.Column * cell + (float)(rng.NextDouble() * slack);
                float y0 = o.Row * cell + (float)(rng.NextDouble() * slack);
                switch (o.Shape)
                {
                    case 0:
                        canvas.DrawCircle(x0 + extent / 2, y0 + extent / 2, extent / 2, paint);
                        break;
                    case 1:
                        canvas.DrawRect(x0, y0, extent, extent, paint);
                        break;
                    default:
                        using (var path = new SKPath())
                        {
                            path.MoveTo(x0 + extent / 2, y0);
                            path.LineTo(x0 + extent, y0 + extent);
                            path.LineTo(x0, y0 + extent);
                            path.Close();
                            canvas.DrawPath(path, paint);
                        }
                        break;
                }
            }
        }
        var rgba = bitmap.Bytes;
        var rgb = new byte[ShapesWorld.ImageBytes];
        for (int p = 0, q = 0; p < size * size; p++, q += 3)
        {
            rgb[q] = rgba[4 * p];
            rgb[q + 1] = rgba[4 * p + 1];
            rgb[q + 2] = rgba[4 * p + 2];
        }
        return rgb;
    }
}
