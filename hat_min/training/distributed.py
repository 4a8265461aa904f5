"""Several processes (``torchrun``) without hiding anything behind a wrapper.

Each process encodes its slice of the global batch; ``gather_batch`` (the ``gather`` of
``HAT.forward``) collects every slice's features (with gradients) so that every process scores the
whole global batch and the hardest negatives come from all of it, exactly as one process with the
whole batch would. After the backward pass ``average_gradients`` averages the parameter gradients
over the processes.

    torchrun --nproc_per_node 2 -m hat_min train --preset tiny --data data/synthetic

Why the gradients come out right: every process computes the same global loss L. The backward of
the all-gather sums what all processes send back, so a process's own features receive
``world * dL/dfeatures``; averaging the parameter gradients over ``world`` processes then gives
exactly dL/dparameters of the single-process run.
"""
from __future__ import annotations

import os

import torch
import torch.distributed as torch_dist
from torch import Tensor


def setup() -> tuple[int, int]:
    """(rank, world size); starts the process group when launched by torchrun (gloo on CPU, nccl on GPUs)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world == 1:
        return 0, 1
    if not torch_dist.is_initialized():
        backend = "nccl" if torch.cuda.is_available() else "gloo"
        torch_dist.init_process_group(backend)
    return torch_dist.get_rank(), world


def device_for(rank: int, prefer: str | None = None) -> torch.device:
    """This process's device: its own GPU under torchrun, else the CPU."""
    if prefer:
        from ..fast.device import pick_device

        return pick_device(prefer)  # checked: a name, and on this machine
    if torch.cuda.is_available():
        local = int(os.environ.get("LOCAL_RANK", rank))
        torch.cuda.set_device(local)
        return torch.device("cuda", local)
    return torch.device("cpu")


def world_size() -> int:
    """Processes in the group (1 when not distributed)."""
    return torch_dist.get_world_size() if torch_dist.is_available() and torch_dist.is_initialized() else 1


def gather(t: Tensor) -> Tensor:
    """Concatenate every process's ``t`` along dim 0, differentiably: (B_local, ...) -> (B_global, ...)."""
    if world_size() == 1:
        return t
    from torch.distributed.nn.functional import all_gather

    return torch.cat(all_gather(t), dim=0)


def gather_batch(image_feats: list[Tensor], text_feats: list[Tensor], mask: Tensor,
                 image_ids: Tensor | None) -> tuple[list[Tensor], list[Tensor], Tensor, Tensor | None]:
    """Every process's slice of a batch of features: L x (b, R_l, D), L x (b, W, D), (b, W), (b,) -> the same for
    the global batch B (``HAT.forward``'s ``gather``); the caption width W must agree (``pad_to_global``)."""
    ids = gather(image_ids) if image_ids is not None else None
    return [gather(f) for f in image_feats], [gather(f) for f in text_feats], gather(mask), ids


def pad_to_global(ids: Tensor, mask: Tensor) -> tuple[Tensor, Tensor]:
    """Token ids and mask (b, W) padded (id 0, mask 0) to the widest W over all processes, so that they gather."""
    extra = max_over_processes(ids.shape[1]) - ids.shape[1]
    if extra == 0:
        return ids, mask
    return torch.nn.functional.pad(ids, (0, extra)), torch.nn.functional.pad(mask, (0, extra))


def max_over_processes(value: int) -> int:
    """The largest ``value`` over all processes (e.g. the caption length to pad to)."""
    if world_size() == 1:
        return value
    t = torch.tensor([value])
    torch_dist.all_reduce(t, op=torch_dist.ReduceOp.MAX)
    return int(t.item())


def average_gradients(model: torch.nn.Module) -> None:
    """Average parameter gradients over all processes (what DistributedDataParallel does)."""
    world = world_size()
    if world == 1:
        return
    for p in model.parameters():
        if p.grad is not None:
            torch_dist.all_reduce(p.grad, op=torch_dist.ReduceOp.SUM)
            p.grad /= world


def barrier() -> None:
    """Wait for every process (no-op when not distributed)."""
    if world_size() > 1:
        torch_dist.barrier()


def cleanup() -> None:
    """Close the process group if this process opened one."""
    if torch_dist.is_available() and torch_dist.is_initialized():
        torch_dist.destroy_process_group()
