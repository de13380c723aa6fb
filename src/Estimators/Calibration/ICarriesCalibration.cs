using Microsoft.ML;
using Msavq.MLNet.Sensitivity;

namespace Msavq.MLNet.Calibration;

/// <summary>
/// A view that passes rows through unchanged and carries what the earlier estimators of the chain learned
/// (architecture.md §2: statistics travel inside the IDataView each transformer returns).
/// </summary>
internal interface ICarriesCalibration
{
    CalibrationResult Calibration { get; }
    BitAllocationPlan? Plan { get; }
}

/// <summary>The pass-through view of the MSAVQ chain.</summary>
internal sealed class CarryingDataView : IDataView, ICarriesCalibration
{
    private readonly IDataView _source;

    public CarryingDataView(IDataView source, CalibrationResult calibration, BitAllocationPlan? plan)
    {
        // Unwrap so a chain of pass-throughs stays one layer deep.
        _source = source is CarryingDataView c ? c._source : source;
        Calibration = calibration;
        Plan = plan;
    }

    public CalibrationResult Calibration { get; }
    public BitAllocationPlan? Plan { get; }

    public bool CanShuffle => _source.CanShuffle;
    public DataViewSchema Schema => _source.Schema;
    public long? GetRowCount() => _source.GetRowCount();
    public DataViewRowCursor GetRowCursor(IEnumerable<DataViewSchema.Column> columnsNeeded, Random? rand = null) =>
        _source.GetRowCursor(columnsNeeded, rand);
    public DataViewRowCursor[] GetRowCursorSet(IEnumerable<DataViewSchema.Column> columnsNeeded, int n, Random? rand = null) =>
        _source.GetRowCursorSet(columnsNeeded, n, rand);

    /// <summary>The carried state, or a clear error naming the estimator that should come first.</summary>
    public static ICarriesCalibration From(IDataView input, string who, bool needPlan)
    {
        if (input is not ICarriesCalibration carried)
            throw new InvalidOperationException(
                $"{who} must follow CollectCalibration in the chain (its input carries no calibration statistics).");
        if (needPlan && carried.Plan is null)
            throw new InvalidOperationException($"{who} must follow EstimateSensitivity in the chain (no bit allocation plan).");
        return carried;
    }
}
