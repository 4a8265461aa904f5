"""hat_min.fast.device: the device and precision helper (the CPU paths; CI has no GPU)."""
import pytest
import torch

from hat_min.fast import device as runtime
from hat_min.fast.device import autocast, autocast_dtype, grad_scaler, pick_device


def test_cpu_is_fp32():
    cpu = torch.device("cpu")
    assert autocast_dtype(cpu) is None and autocast_dtype(cpu, "fp32") is None
    with autocast(cpu):
        assert (torch.ones(2, 2) @ torch.ones(2, 2)).dtype == torch.float32
    assert not grad_scaler(cpu).is_enabled()


def test_explicit_precision_on_cpu():
    assert autocast_dtype(torch.device("cpu"), "bf16") == torch.bfloat16
    with autocast(torch.device("cpu"), "bf16"):
        assert (torch.ones(2, 2) @ torch.ones(2, 2)).dtype == torch.bfloat16
    with pytest.raises(ValueError, match="precision"):
        autocast_dtype(torch.device("cpu"), "fp8")


def test_pick_device():
    assert pick_device("cpu") == torch.device("cpu")
    assert pick_device().type in ("cuda", "mps", "cpu")
    if not torch.cuda.is_available():
        with pytest.raises(RuntimeError, match="CUDA is not available"):
            pick_device("cuda")


@pytest.mark.parametrize("capability, name, expected", [
    ((7, 5), "Tesla T4", torch.float16),         # Colab's T4: bf16 only emulated
    ((7, 0), "Tesla V100-SXM2-16GB", torch.float16),
    ((8, 0), "NVIDIA A100-SXM4-40GB", torch.bfloat16),
    ((8, 9), "NVIDIA L4", torch.bfloat16),
    ((9, 0), "NVIDIA H100 80GB HBM3", torch.bfloat16),
])
def test_auto_precision_is_fp16_with_a_scaler_before_ampere(monkeypatch, capability, name, expected):
    """torch reports bf16 as supported on a T4 (emulated): "auto" must ask the compute capability instead."""
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: True)
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda *a, **k: capability)
    cuda = torch.device("cuda")
    assert runtime.autocast_dtype(cuda, "auto") == expected
    assert runtime.autocast_dtype(cuda, "bf16") == torch.bfloat16  # an explicit choice is kept
    monkeypatch.setattr(torch.amp, "GradScaler", lambda device, enabled: ("scaler", device, enabled))
    assert runtime.grad_scaler(cuda, "auto") == ("scaler", "cuda", expected == torch.float16)
    assert runtime.grad_scaler(torch.device("cpu"), "auto")[2] is False
