"""Device and precision: the one place that decides where and in which dtype HAT runs.

    device = pick_device()                 # cuda, then mps, then cpu
    with autocast(device):                 # bf16 on Ampere and later GPUs, fp16 on older ones, fp32 on CPU
        loss = model(images, input_ids, attention_mask)
    scaler = grad_scaler(device)           # enabled only for fp16

Model, loss and metrics code never calls ``.cuda()``; they follow their inputs. (The frozen text encoder's
bf16 on a CPU is the encoder's own business: ``hat_min.encoders.BertLayers``.)
"""
from __future__ import annotations

import contextlib

import torch


class DeviceError(RuntimeError):
    """A requested device that is no device name, or not on this machine (one line: the command line prints it)."""


def pick_device(prefer: str | None = None) -> torch.device:
    """The requested device (``DeviceError`` if it is not here), else the best available: cuda, mps, cpu."""
    if prefer:
        try:
            device = torch.device(prefer)
        except RuntimeError:
            raise DeviceError(f"{prefer!r} is not a device; use cpu, cuda, cuda:N or mps") from None
        if device.type == "cuda" and not torch.cuda.is_available():
            raise DeviceError(f"device {prefer!r} was asked for but CUDA is not available here; use 'cpu'")
        if device.type == "cuda" and device.index is not None and device.index >= torch.cuda.device_count():
            raise DeviceError(f"device {prefer!r} was asked for but this machine has {torch.cuda.device_count()} "
                              f"CUDA device(s), cuda:0 to cuda:{torch.cuda.device_count() - 1}")
        if device.type == "mps" and not _mps_available():
            raise DeviceError(f"device {prefer!r} was asked for but MPS (Apple GPUs) is not available here; use 'cpu'")
        return device
    if torch.cuda.is_available():
        return torch.device("cuda")
    if _mps_available():
        return torch.device("mps")
    return torch.device("cpu")


def _mps_available() -> bool:
    return getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available()


def autocast_dtype(device: torch.device, precision: str = "auto") -> torch.dtype | None:
    """Mixed-precision dtype for ``device``: None means full fp32.

    precision: "auto" (bf16 on GPUs that compute it natively, compute capability 8.0 and up: A100, L4,
    H100; fp16 with a GradScaler on older ones: T4, V100; fp32 on CPU and MPS), "bf16", "fp16" or "fp32".
    """
    if precision not in ("auto", "bf16", "fp16", "fp32"):
        raise ValueError(f"precision must be auto, bf16, fp16 or fp32, not {precision!r}")
    if precision == "fp32" or (precision == "auto" and device.type != "cuda"):
        return None
    if precision == "auto":
        return torch.bfloat16 if cuda_has_native_bf16(device) else torch.float16
    return torch.bfloat16 if precision == "bf16" else torch.float16


def cuda_has_native_bf16(device: torch.device) -> bool:
    """Whether this GPU computes bf16 in hardware (compute capability >= 8.0, Ampere and later).

    ``torch.cuda.is_bf16_supported()`` also answers True on a T4 (7.5), where bf16 is emulated: slower than
    fp16 and without its tensor cores, so "auto" asks the capability instead.
    """
    major, _ = torch.cuda.get_device_capability(device)
    return major >= 8


def autocast(device: torch.device, precision: str = "auto"):
    """A context manager running the forward pass in the chosen mixed precision (or a no-op)."""
    dtype = autocast_dtype(device, precision)
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=dtype)


def grad_scaler(device: torch.device, precision: str = "auto") -> torch.amp.GradScaler:
    """A GradScaler, enabled only when training in fp16."""
    enabled = autocast_dtype(device, precision) == torch.float16
    return torch.amp.GradScaler(device.type, enabled=enabled)
