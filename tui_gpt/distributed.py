"""Many processes, one run: setup and teardown for `torchrun --nproc_per_node=N -m tui_gpt train ...`.

torchrun starts N copies of the command with RANK, LOCAL_RANK and WORLD_SIZE set. Each joins one
process group (NCCL between GPUs, gloo on CPU), trains a DistributedDataParallel copy of the model
on its own slice of every global batch, and rank 0 alone evaluates, prints and saves.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist

from tui_gpt.errors import TuiGptError


@dataclass(frozen=True)
class Dist:
    rank: int = 0
    world: int = 1
    local_rank: int = 0
    local_world: int = 1

    @property
    def main(self) -> bool:
        return self.rank == 0


SINGLE = Dist()


def launched() -> bool:
    """Whether torchrun (or a launcher like it) started this process as one of several."""
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


def current() -> Dist:
    """This process's place in the process group (rank 0 of 1 when there is none)."""
    if not (dist.is_available() and dist.is_initialized()):
        return SINGLE
    world = dist.get_world_size()
    return Dist(
        dist.get_rank(),
        world,
        int(os.environ.get("LOCAL_RANK", "0")),
        int(os.environ.get("LOCAL_WORLD_SIZE", str(world))),
    )


def setup(device: str = "auto") -> Dist:
    """Join the process group torchrun describes in the environment; a no-op in a single process.

    Returns this process's Dist. On CUDA each rank takes the GPU of its local rank.
    """
    if not launched():
        return SINGLE
    if dist.is_initialized():
        return current()
    cuda = device.startswith("cuda") or (device == "auto" and torch.cuda.is_available())
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if cuda:
        if local_rank >= torch.cuda.device_count():
            raise TuiGptError(
                f"local rank {local_rank} has no GPU: only {torch.cuda.device_count()} visible; "
                f"use --nproc_per_node={torch.cuda.device_count()} or fewer"
            )
        torch.cuda.set_device(local_rank)
    try:
        dist.init_process_group(backend="nccl" if cuda else "gloo")
    except (RuntimeError, ValueError) as exc:
        raise TuiGptError(f"cannot join the torchrun process group: {str(exc).splitlines()[0][:120]}") from None
    d = current()
    if not cuda:
        # N ranks on one CPU share its cores rather than each claiming all of them.
        from tui_gpt.autotune import all_cores

        torch.set_num_threads(max(1, all_cores() // d.local_world))
    return d


def device_name(device: str, d: Dist) -> str:
    """The device this rank trains on: its own GPU under torchrun on CUDA."""
    if d.world > 1 and (device == "cuda" or (device == "auto" and torch.cuda.is_available())):
        return f"cuda:{d.local_rank}"
    return device


def teardown() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def barrier() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.barrier()


def mean_across(t: torch.Tensor) -> torch.Tensor:
    """The mean of a tensor over all ranks (itself in a single process)."""
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return t
    t = t.clone()
    dist.all_reduce(t, op=dist.ReduceOp.SUM)  # gloo has no AVG
    return t / dist.get_world_size()


def broadcast(obj: object) -> object:
    """Rank 0's `obj` on every rank."""
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=0)
    return box[0]
