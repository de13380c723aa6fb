using Microsoft.ML;
using Microsoft.ML.Data;

namespace Msavq.MLNet.Calibration;

/// <summary>
/// Base of the chain's intermediate transformers: rows pass unchanged (the payload rides on the returned view).
/// Row-to-row mapping is the identity, so the fitted chain works with PredictionEngine.
/// </summary>
public abstract class PassThroughTransformer : ITransformer
{
    private static readonly TransformerChain<ITransformer> Identity = new();

    public bool IsRowToRowMapper => true;
    public DataViewSchema GetOutputSchema(DataViewSchema inputSchema) => inputSchema;
    public IRowToRowMapper GetRowToRowMapper(DataViewSchema inputSchema) => ((ITransformer)Identity).GetRowToRowMapper(inputSchema);
    public abstract IDataView Transform(IDataView input);
    // Nothing of the calibration is needed at scoring time; it saves as an empty chain (the identity).
    void ICanSaveModel.Save(ModelSaveContext ctx) => ((ICanSaveModel)Identity).Save(ctx);
}
