"""Training on several processes: `torchrun --nproc_per_node N -m transfigure train ...`.

One process per device. Every process builds the same networks from the same seed
(rank 0's weights are broadcast to make sure), trains on its own slice of each
global batch, and averages its gradients with the others before every optimizer
step. That is what DistributedDataParallel does, done here per optimizer phase
instead of by a wrapper: a GAN's iteration runs the discriminator both frozen (in
the generator's phase) and trained (in its own), which DDP's reducer, expecting a
gradient for every parameter after every backward pass, reports as unused
parameters or hangs on. Averaging each phase's gradients in one flat all-reduce
gives the same result without that bookkeeping.

`--batch_size` is per process: the global batch is batch_size x world size, and
nothing rescales the learning rate (the README says how to choose it)."""
from __future__ import annotations

import datetime
import os
import re
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import nn

from .errors import TransfigureError, UsageError


@dataclass(frozen=True)
class World:
    rank: int = 0
    size: int = 1
    local_rank: int = 0

    @property
    def active(self) -> bool:
        return self.size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


SINGLE = World()


class LostPeer(TransfigureError):
    """This process stopped because another one of the job failed or was killed."""

    def __init__(self, world: World, cause: BaseException):
        text = str(cause).strip().splitlines()[-1] if str(cause).strip() else type(cause).__name__
        detail = re.sub(r"^\[[^\]]*\]\s*", "", text).split(". ")[0][:160]  # without gloo's source location
        super().__init__(f"process {world.rank} of {world.size} stopped: another process of the job failed or was "
                         f"killed ({detail}); torchrun's report names it and its error")


def is_lost_peer(error: BaseException) -> bool:
    """A collective that failed because a peer went away (gloo's or NCCL's words for it)."""
    if isinstance(error, dist.DistError):
        return True
    text = str(error)
    return isinstance(error, RuntimeError) and any(
        words in text for words in ("Connection closed by peer", "Connection reset by peer", "gloo", "NCCL",
                                    "Broken pipe", "Timed out"))


def world_from_environment() -> World:
    """The process's place in a torchrun job (RANK, WORLD_SIZE, LOCAL_RANK), or SINGLE."""
    try:
        size = int(os.environ.get("WORLD_SIZE", "1"))
        rank = int(os.environ.get("RANK", "0"))
        local_rank = int(os.environ.get("LOCAL_RANK", str(rank)))
    except ValueError:
        raise UsageError("WORLD_SIZE, RANK and LOCAL_RANK must be whole numbers (torchrun sets them)") from None
    return World(rank, size, local_rank) if size > 1 else SINGLE


def restarted_by_launcher() -> bool:
    """True when torchrun (--max_restarts) started this process again after a failure."""
    return int(os.environ.get("TORCHELASTIC_RESTART_COUNT", "0") or 0) > 0


def start(world: World, device: torch.device, backend: str = "auto", timeout_s: int = 120) -> torch.device:
    """Join the job's process group (gloo on CPU, NCCL on CUDA unless `backend` says
    otherwise) and return this process's device (its own GPU on CUDA)."""
    if not world.active:
        return device
    if device.type == "cuda":
        if world.local_rank >= torch.cuda.device_count():
            raise UsageError(f"process {world.rank} has LOCAL_RANK {world.local_rank}, but this machine has "
                             f"{torch.cuda.device_count()} GPU(s): use --nproc_per_node "
                             f"{torch.cuda.device_count()} or fewer")
        device = torch.device("cuda", world.local_rank)
        torch.cuda.set_device(device)
    if backend == "auto":
        backend = "nccl" if device.type == "cuda" else "gloo"
    if backend == "nccl" and device.type != "cuda":
        raise UsageError("--dist_backend nccl needs GPUs; on CPUs use gloo (--dist_backend auto picks it)")
    if not dist.is_initialized():
        timeout = datetime.timedelta(seconds=timeout_s)
        missing = [v for v in ("MASTER_ADDR", "MASTER_PORT") if not os.environ.get(v)]
        if missing:
            raise UsageError(f"WORLD_SIZE is {world.size} but {' and '.join(missing)} are not set: start several "
                             "processes with torchrun (see the README), which sets them")
        store, _, _ = next(dist.rendezvous("env://", world.rank, world.size, timeout=timeout))
        # torchrun's store outlives a restart: keys of the failed attempt (each process's address)
        # would be read by the new one, which then connects to dead ports. A prefix per attempt.
        attempt = os.environ.get("TORCHELASTIC_RESTART_COUNT", "0")
        dist.init_process_group(backend, store=dist.PrefixStore(f"transfigure/attempt{attempt}", store),
                                rank=world.rank, world_size=world.size, timeout=timeout,
                                **({"device_id": device} if backend == "nccl" else {}))
    return device


def stop(world: World) -> None:
    if world.active and dist.is_initialized():
        dist.destroy_process_group()


def broadcast_module(module: nn.Module, world: World) -> None:
    """Rank 0's parameters and buffers everywhere."""
    if world.active:
        with torch.no_grad():
            for tensor in [*module.parameters(), *module.buffers()]:
                dist.broadcast(tensor.data, 0)


def average_gradients(parameters, world: World) -> None:
    """The mean of every process's gradients, in one flat all-reduce."""
    if not world.active:
        return
    grads = [p.grad for p in parameters if p.grad is not None]
    if not grads:
        return
    flat = torch.cat([g.reshape(-1) for g in grads])
    dist.all_reduce(flat)
    flat /= world.size
    offset = 0
    for g in grads:
        g.copy_(flat[offset:offset + g.numel()].view_as(g))
        offset += g.numel()


def mean_and_any(values: list[float], flag: bool, world: World) -> tuple[list[float], bool]:
    """Every process's `values` averaged and `flag` or-ed, in one all-reduce: all
    processes then log the same losses, step the same schedules and stop together."""
    if not world.active:
        return values, flag
    t = torch.tensor([*values, float(flag)], dtype=torch.float64)
    dist.all_reduce(t)
    return [v / world.size for v in t[:-1].tolist()], t[-1].item() > 0


def gather(obj, world: World) -> list:
    """`obj` of every process, in rank order (on every process)."""
    if not world.active:
        return [obj]
    out = [None] * world.size
    dist.all_gather_object(out, obj)
    return out


def broadcast_object(obj, world: World):
    """Rank 0's `obj` on every process."""
    if not world.active:
        return obj
    box = [obj if world.is_main else None]
    dist.broadcast_object_list(box, 0)
    return box[0]


class SyncBatchNorm2d(nn.BatchNorm2d):
    """Batch norm whose statistics are those of the global batch, over every process.
    torch.nn.SyncBatchNorm does this on GPUs only; this one runs on any device (the
    sums go through an all-reduce that carries gradients back). Running statistics
    update as BatchNorm2d's would for the global batch, so every process keeps the same."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not (self.training and dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1):
            return super().forward(x)
        from torch.distributed.nn.functional import all_reduce

        dims = (0, 2, 3)
        # Two passes, as one process's batch norm: the global mean, then the global sum of squared
        # deviations from it. (E[x^2] - mean^2 in one pass loses the variance to cancellation
        # when the mean is large against the spread.)
        count = torch.tensor([x.shape[0] * x.shape[2] * x.shape[3]], dtype=x.dtype, device=x.device)
        sums = all_reduce(torch.cat([x.sum(dims), count]))
        n = sums[-1]
        mean = sums[:-1] / n
        var = all_reduce(((x - mean.view(1, -1, 1, 1)) ** 2).sum(dims)) / n
        if self.track_running_stats:
            with torch.no_grad():
                self.num_batches_tracked += 1
                momentum = self.momentum if self.momentum is not None else 1.0 / float(self.num_batches_tracked)
                unbiased = var * n / (n - 1).clamp(min=1)
                self.running_mean.mul_(1 - momentum).add_(momentum * mean)
                self.running_var.mul_(1 - momentum).add_(momentum * unbiased)
        y = (x - mean.view(1, -1, 1, 1)) * torch.rsqrt(var.view(1, -1, 1, 1) + self.eps)
        if self.affine:
            y = y * self.weight.view(1, -1, 1, 1) + self.bias.view(1, -1, 1, 1)
        return y


def convert_batch_norm(module: nn.Module) -> nn.Module:
    """Every BatchNorm2d in `module` replaced, in place, by a SyncBatchNorm2d holding the
    same parameters and buffers (the state_dict keys do not change)."""
    for name, child in module.named_children():
        if type(child) is nn.BatchNorm2d:
            synced = SyncBatchNorm2d(child.num_features, child.eps, child.momentum, child.affine,
                                     child.track_running_stats).to(next(child.buffers(), torch.empty(0)).device)
            synced.load_state_dict(child.state_dict())
            setattr(module, name, synced)
        else:
            convert_batch_norm(child)
    return module
