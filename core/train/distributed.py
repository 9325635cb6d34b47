"""Data parallelism over torch.distributed (NCCL on GPUs, gloo on CPU), by hand rather than with
``DistributedDataParallel``: E and G run twice per step (the cycle re-encodes generated images) and the
discriminators alternate with the generators, which DDP's one-forward-one-backward hooks do not allow."""

from __future__ import annotations

import os

import torch
import torch.distributed as dist


def dist_info() -> tuple[int, int, int]:
    """(rank, world size, local rank) as torchrun sets them; (0, 1, 0) for a single process."""
    return int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1)), int(os.environ.get("LOCAL_RANK", 0))


def init(device: torch.device, world: int) -> None:
    if world > 1 and not dist.is_initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")


def broadcast_weights(model: torch.nn.Module, world: int) -> None:
    """Every rank starts from rank 0's weights."""
    if world > 1:
        for t in model.state_dict().values():
            dist.broadcast(t, 0)


def broadcast_buffers(model: torch.nn.Module, world: int) -> None:
    """BatchNorm running statistics follow rank 0, so every rank evaluates the same model."""
    if world > 1:
        for b in model.buffers():
            dist.broadcast(b, 0)


def average_gradients(modules, world: int) -> None:
    """Average the gradients of ``modules`` over ranks in one flat all-reduce.

    A module none of whose parameters got a gradient took no part in this step (e.g. D_x on a step of d_x_every
    it skips, the same on every rank): it is left out, so that Adam skips it as on one process."""
    if world == 1:
        return
    modules = [m for m in modules if any(p.grad is not None for p in m.parameters())]
    params = [p for m in modules for p in m.parameters() if p.requires_grad]
    if not params:
        return
    for p in params:
        if p.grad is None:
            p.grad = torch.zeros_like(p)
    flat = torch._utils._flatten_dense_tensors([p.grad for p in params])
    dist.all_reduce(flat)
    flat /= world
    for p, g in zip(params, torch._utils._unflatten_dense_tensors(flat, [p.grad for p in params])):
        p.grad.copy_(g)


def sum_over_ranks(t: torch.Tensor, device: torch.device, world: int) -> torch.Tensor:
    if world == 1:
        return t
    t = t.to(device)
    dist.all_reduce(t)
    return t.cpu()
