using Microsoft.ML;
using Microsoft.ML.Data;
using Msavq.MLNet.Models;
using static TorchSharp.torch;

namespace Msavq.MLNet.Scoring;

/// <summary>
/// The mapping that adds a <see cref="IFeatureModel"/>'s vector per row as a column of fixed length: a
/// <c>CustomMapping</c> from the text or image column, saved under <see cref="TextContract"/> or <see cref="ImageContract"/>.
/// </summary>
public static class FeatureScoring
{
    public const string TextContract = "Msavq.Features.Text/1 (load with MsavqPipeline.Load)";
    public const string ImageContract = "Msavq.Features.Image/1 (load with MsavqPipeline.Load)";

    /// <summary>Throws unless <paramref name="inputColumn"/> is there with the type <paramref name="model"/> reads.</summary>
    public static void Validate(DataViewSchema schema, IFeatureModel model, string inputColumn)
    {
        var type = schema.GetColumnOrNull(inputColumn)?.Type;
        if (model.Source == FeatureSource.Text) ScoringSchema.CheckText(type, inputColumn);
        else ScoringSchema.CheckImage(type, inputColumn);
    }

    /// <summary>
    /// The fitted mapping from <paramref name="inputColumn"/> of <paramref name="inputSchema"/> to a Single vector column
    /// <paramref name="outputColumn"/> of <see cref="IFeatureModel.FeatureLength"/> items.
    /// </summary>
    public static ITransformer Fit(MLContext ml, IFeatureModel model, DataViewSchema inputSchema, string inputColumn, string outputColumn)
    {
        if (string.IsNullOrWhiteSpace(outputColumn)) throw new ArgumentException("The feature column needs a name.", nameof(outputColumn));
        if (outputColumn == inputColumn)
            throw new ArgumentException($"The feature column '{outputColumn}' would replace the column it reads.", nameof(outputColumn));
        Validate(inputSchema, model, inputColumn);
        if (model.FeatureLength < 1) throw new InvalidOperationException($"{model.GetType().Name} reports {model.FeatureLength} features per row.");
        var output = OutputDefinition(outputColumn, model.FeatureLength);
        if (model.Source == FeatureSource.Text)
        {
            var input = TextDefinition(inputColumn);
            var empty = ml.Data.LoadFromEnumerable(Array.Empty<TextFeatureInput>(), input);
            return ml.Transforms.CustomMapping<TextFeatureInput, FeatureOutput>((i, o) => o.Features = Score(model, new ModelRow(Array.Empty<byte>(), i.Text)),
                TextContract, input, output).Fit(empty);
        }
        else
        {
            var input = SchemaDefinition.Create(typeof(ImageFeatureInput));
            // The indexer finds a column by its current name: fetched once, before it is renamed.
            var image = input[nameof(ImageFeatureInput.Image)];
            image.ColumnType = inputSchema[inputColumn].Type;
            image.ColumnName = inputColumn;
            var empty = ml.Data.LoadFromEnumerable(Array.Empty<ImageFeatureInput>(), input);
            return ml.Transforms.CustomMapping<ImageFeatureInput, FeatureOutput>((i, o) => o.Features = Score(model, new ModelRow(i.Image, "")),
                ImageContract, input, output).Fit(empty);
        }
    }

    /// <summary><see cref="FeatureOutput"/> as a column <paramref name="column"/> of <paramref name="length"/> Singles.</summary>
    public static SchemaDefinition OutputDefinition(string column, int length)
    {
        var output = SchemaDefinition.Create(typeof(FeatureOutput));
        var features = output[nameof(FeatureOutput.Features)];
        features.ColumnType = new VectorDataViewType(NumberDataViewType.Single, length);
        features.ColumnName = column;
        return output;
    }

    private static SchemaDefinition TextDefinition(string column)
    {
        var input = SchemaDefinition.Create(typeof(TextFeatureInput));
        input[nameof(TextFeatureInput.Text)].ColumnName = column;
        return input;
    }

    // Called per row from cursor getters, possibly on several threads: no_grad and scopes are thread-local,
    // so they are opened here (architecture.md §6).
    internal static float[] Score(IFeatureModel model, ModelRow row)
    {
        using var scope = NewDisposeScope();
        using var _ = no_grad();
        var features = model.Features(new[] { row });
        if (features.shape.Length != 2 || features.shape[0] != 1 || features.shape[1] != model.FeatureLength)
            throw new InvalidOperationException($"{model.GetType().Name} gave features [{string.Join(", ", features.shape)}] for one row; " +
                                                $"it reports {model.FeatureLength} per row.");
        return features.to(ScalarType.Float32).cpu().data<float>().ToArray();
    }
}
