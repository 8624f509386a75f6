"""Several processes under torchrun (DDP); every helper is a no-op in one process.

Skip this file on a first read. Under `torchrun --nproc_per_node=N`, every process
draws the same global batch (same seed) and trains on its own slice of it (shard);
DDP averages the gradients, so N processes take the steps one process would take on
the whole batch. Rank 0 logs, saves and evaluates.
"""

import contextlib
import gc
import os

import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel

from model import get_device


def setup_device(name: str) -> torch.device:
    """The device to train on; first joins the process group when torchrun started
    several processes (NCCL on CUDA, each process on the GPU of its LOCAL_RANK; gloo on CPU)."""
    device = get_device(name)
    if device.type == "cuda":  # TF32 tensor cores for the fp32 matmuls autocast leaves
        torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = True
    if int(os.environ.get("WORLD_SIZE", 1)) > 1 and not dist.is_initialized():
        if device.type == "cuda":
            device = torch.device("cuda", int(os.environ["LOCAL_RANK"]))
            torch.cuda.set_device(device)
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    return device


def leave_process_group() -> None:
    """At the end of a run under torchrun: every process waits for the others (rank 0
    may still be evaluating and saving), then all tear the group down together, so no
    process closes its connections while another is still using them. gc.collect()
    first frees a DDP wrapper left in a reference cycle, which would hold the group:
    left to the interpreter's exit, the group's gloo worker threads are destroyed there
    and the process can abort ("terminate called without an active exception", as
    pytorch/pytorch PR 179291 describes; our reading of a rare abort, not proven)."""
    if dist.is_initialized():
        dist.barrier()
        gc.collect()
        dist.destroy_process_group()


def world_size() -> int:
    return dist.get_world_size() if dist.is_initialized() else 1


def is_main() -> bool:
    return not dist.is_initialized() or dist.get_rank() == 0


def shard(rows):
    """This process's share of a global batch (a list or a tensor; all of it in one process)."""
    if len(rows) % world_size():
        raise ValueError(f"a batch of {len(rows)} does not split evenly over {world_size()} "
                         "processes")
    return rows[dist.get_rank()::world_size()] if dist.is_initialized() else rows


def for_training(model, compile: bool = False):
    """The model wrapped for gradient averaging when there are several processes, and
    compiled if asked (DDP first, then torch.compile, as PyTorch recommends)."""
    net = DistributedDataParallel(model) if world_size() > 1 else model
    return torch.compile(net) if compile else net


def grad_sync(net, now: bool):
    """Under DDP every backward() all-reduces the gradients; in an accumulated step only
    the last micro-batch's needs to (no_sync skips the others)."""
    return contextlib.nullcontext() if now or world_size() == 1 else net.no_sync()


def barrier() -> None:
    if dist.is_initialized():
        dist.barrier()


def all_gather(t: torch.Tensor) -> torch.Tensor:
    """Every process's t, concatenated along dim 0 in rank order (t itself in one process)."""
    if world_size() == 1:
        return t
    parts = [torch.empty_like(t) for _ in range(world_size())]
    dist.all_gather(parts, t.contiguous())
    return torch.cat(parts)


def all_reduce_mean(flat: torch.Tensor) -> torch.Tensor:
    """The mean of a tensor over the processes (itself in one process)."""
    if world_size() > 1:
        dist.all_reduce(flat)
        flat /= world_size()
    return flat
