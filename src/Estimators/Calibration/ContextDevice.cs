using Microsoft.ML;
using TorchSharp;
using static TorchSharp.torch;

namespace Msavq.MLNet.Calibration;

/// <summary>
/// How the chain honours <see cref="MLContext.GpuDeviceId"/> and <see cref="MLContext.FallbackToCpu"/>. The model
/// decides where tensors live (<see cref="Models.IQuantizableModel.Device"/>): calibration, planning and quantization
/// create every tensor on the device of the one they work with, and nothing moves the caller's model. The context's
/// request is therefore a check, made before any work by the estimators reached through <c>ml.Msavq()</c>:
/// <list type="bullet">
/// <item>GpuDeviceId null: no request; the chain runs where the model is.</item>
/// <item>GpuDeviceId = i and CUDA available: the model must be on cuda:i, or the fit fails saying so.</item>
/// <item>GpuDeviceId = i and no CUDA (a TorchSharp-cpu build, no GPU): with FallbackToCpu the chain runs on the CPU,
/// where the model then is; without it the fit fails.</item>
/// </list>
/// </summary>
internal static class ContextDevice
{
    /// <summary>Checks <paramref name="ml"/>'s request (if any) against the model's device.</summary>
    /// <exception cref="InvalidOperationException">The request cannot be met; the message says why and what to do.</exception>
    public static void Check(MLContext? ml, Device modelDevice)
    {
        if (ml?.GpuDeviceId is null) return;
        Check(ml.GpuDeviceId, ml.FallbackToCpu, cuda.is_available(), modelDevice);
    }

    /// <summary>The rule itself, with CUDA's availability given (testable without a GPU).</summary>
    internal static void Check(int? gpuDeviceId, bool fallbackToCpu, bool cudaAvailable, Device modelDevice)
    {
        if (gpuDeviceId is not { } id) return;
        if (cudaAvailable)
        {
            if (modelDevice.type != DeviceType.CUDA || Math.Max(modelDevice.index, 0) != id)
                throw new InvalidOperationException(
                    $"MLContext.GpuDeviceId is {id} but the model is on {modelDevice}: the chain works where the model's parameters are " +
                    $"and does not move the caller's model. Move it first (model.to(new Device(DeviceType.CUDA, {id}))), or set GpuDeviceId to null.");
            return;
        }
        if (!fallbackToCpu)
            throw new InvalidOperationException(
                $"MLContext.GpuDeviceId is {id} but CUDA is not available (no GPU, or the CPU-only TorchSharp package) and " +
                "MLContext.FallbackToCpu is false. Set FallbackToCpu to run on the CPU, or GpuDeviceId to null.");
    }
}
