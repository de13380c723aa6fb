using Microsoft.ML;
using Microsoft.ML.Data;

namespace Msavq.MLNet.Scoring;

/// <summary>Checks and maps the columns a VLM scorer reads: an image byte vector and a text question.</summary>
public static class ScoringSchema
{
    public static void Validate(DataViewSchema schema, string imageColumn, string questionColumn)
    {
        CheckImage(schema.GetColumnOrNull(imageColumn)?.Type, imageColumn);
        CheckText(schema.GetColumnOrNull(questionColumn)?.Type, questionColumn);
    }

    /// <summary>Throws unless <paramref name="type"/> is a vector of bytes.</summary>
    public static void CheckImage(DataViewType? type, string column)
    {
        if (type is null) throw new ArgumentOutOfRangeException(column, $"Image column '{column}' not found.");
        if (type is not VectorDataViewType v || v.ItemType != NumberDataViewType.Byte)
            throw new ArgumentOutOfRangeException(column,
                $"Image column '{column}' has type {type}; expected a vector of Byte (RGB bytes, height × width × 3).");
    }

    /// <summary>Throws unless <paramref name="type"/> is text.</summary>
    public static void CheckText(DataViewType? type, string column)
    {
        if (type is null) throw new ArgumentOutOfRangeException(column, $"Text column '{column}' not found.");
        if (type is not TextDataViewType)
            throw new ArgumentOutOfRangeException(column, $"Column '{column}' has type {type}; expected String (text).");
    }

    /// <summary>Maps <see cref="VqaScoringInput"/>'s members onto the user's columns, with their exact types.</summary>
    public static SchemaDefinition InputDefinition(DataViewSchema schema, string imageColumn, string questionColumn)
    {
        var definition = SchemaDefinition.Create(typeof(VqaScoringInput));
        // The indexer finds a column by its current name: each is fetched once, before it is renamed.
        var image = definition[nameof(VqaScoringInput.Image)];
        image.ColumnType = schema[imageColumn].Type;
        image.ColumnName = imageColumn;
        definition[nameof(VqaScoringInput.Question)].ColumnName = questionColumn;
        return definition;
    }
}
