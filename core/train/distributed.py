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


class GradientAverager:
    """Average gradients over ranks while backward still runs, in buckets, as DDP does.

    Each parameter's gradient joins the open bucket as soon as autograd has accumulated it; a bucket of
    ``bucket_mb`` is all-reduced asynchronously while backward goes on through the earlier layers, and ``finish``
    sends the last bucket and waits. Autograd visits the parameters in the same order on every rank, so the buckets
    match. A module none of whose parameters got a gradient took no part in this update (e.g. D_x on a step that
    ``d_x_every`` skips, on every rank alike) and is left out, so that Adam skips it as on one process; a parameter
    of a module that did take part but got no gradient is sent as zeros."""

    def __init__(self, model: torch.nn.Module, world: int, bucket_mb: float = 25.0):
        self.world, self.bucket_bytes = world, bucket_mb * 2**20
        self.active = False
        self.bucket: list = []
        self.bucket_size = 0
        self.sent: list = []  # (work, flat tensor, its parameters)
        self.ready: set = set()
        self.launched_in_backward = 0  # buckets sent before backward ended (what overlaps)
        if world > 1:
            for p in model.parameters():
                p.register_post_accumulate_grad_hook(self._on_gradient)

    def start(self) -> None:
        """Call before ``backward()``: only gradients of this update are sent (other backward passes, such as a
        figure's, never reach the network)."""
        self.active = self.world > 1

    def _on_gradient(self, p: torch.Tensor) -> None:
        if not self.active or p in self.ready:
            return
        self.ready.add(p)
        self.bucket.append(p)
        self.bucket_size += p.grad.numel() * p.grad.element_size()
        if self.bucket_size >= self.bucket_bytes:
            self._send()
            self.launched_in_backward += 1

    def _send(self) -> None:
        if self.bucket:
            flat = torch._utils._flatten_dense_tensors([p.grad for p in self.bucket])
            self.sent.append((dist.all_reduce(flat, async_op=True), flat, self.bucket))
        self.bucket, self.bucket_size = [], 0

    def finish(self, modules) -> None:
        """Call after ``backward()``: send what is left, wait, and write the averages into ``.grad``."""
        if self.world == 1:
            return
        self.active = False
        for m in modules:
            params = [p for p in m.parameters() if p.requires_grad]
            if any(p in self.ready for p in params):
                for p in params:
                    if p not in self.ready:
                        p.grad = torch.zeros_like(p)
                        self.ready.add(p)
                        self.bucket.append(p)
        self._send()
        for work, flat, params in self.sent:
            work.wait()
            flat /= self.world
            for p, g in zip(params, torch._utils._unflatten_dense_tensors(flat, [p.grad for p in params])):
                p.grad.copy_(g)
        self.sent, self.ready = [], set()


def sum_over_ranks(t: torch.Tensor, device: torch.device, world: int) -> torch.Tensor:
    if world == 1:
        return t
    t = t.to(device)
    dist.all_reduce(t)
    return t.cpu()


def relaunch(nproc: int, argv: list[str]) -> None:
    """``fsx train --nproc N``: this process becomes torchrun's agent (``torch.distributed.run``, as Accelerate
    calls it) running the same command (``argv``, without the program) in N workers; exits with the run's status.

    In-process rather than a child, so that a signal sent to this process (a scheduler's SIGTERM) reaches the agent,
    which forwards it to every worker, and no waiting parent turns a Ctrl-C into a kill of torchrun. Each worker
    says in one line why it stopped; the agent's own exception would only repeat it as a traceback."""
    from torch.distributed.elastic.multiprocessing.api import SignalException
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
    from torch.distributed.run import parse_args, run

    args, skip = [], False
    for a in argv:
        if skip:
            skip = False
            continue
        if a == "--nproc":
            skip = True
            continue
        if a.startswith("--nproc="):
            continue
        args.append(a)
    try:
        run(parse_args(["--standalone", f"--nproc_per_node={nproc}", "-m", "fsx", *args]))
    except SignalException as exc:  # forwarded to the workers, which saved and stopped
        raise SystemExit(128 + exc.sigval)
    except ChildFailedError as exc:
        raise SystemExit(exc.get_first_failure()[1].exitcode or 1)
    raise SystemExit(0)
