"""Many processes, one run: setup and teardown for `torchrun --nproc_per_node=N -m tui_gpt train ...`.

torchrun starts N copies of the command with RANK, LOCAL_RANK and WORLD_SIZE set. Each joins one
process group (NCCL between GPUs, gloo on CPU), trains a DistributedDataParallel copy of the model
on its own slice of every global batch, and rank 0 alone evaluates, prints and saves.
"""

from __future__ import annotations

import os
import re
import sys
from dataclasses import dataclass
from datetime import timedelta
from typing import NoReturn, TypeVar

import torch
import torch.distributed as dist

from tui_gpt.errors import TuiGptError
from tui_gpt.settings import DIST_TIMEOUT


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


T = TypeVar("T")  # what `broadcast` sends: rank 0's object, the same type on every rank

# What torchrun sets in every process it starts. All of them, or none of the first three (one process).
TORCHRUN_VARS = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT")
RANK_VARS = TORCHRUN_VARS[:3]  # any of these alone means a launch was meant; MASTER_* are often set globally


_ADVICE = "unset RANK, WORLD_SIZE and LOCAL_RANK to train in one process, or start the run with torchrun"


def _whole(name: str, default: int | None = None) -> int:
    value = os.environ.get(name, "")
    if not value and default is not None:
        return default
    if not (value.isascii() and value.isdigit()):  # int() would take " 1", "+1" and "1_0"
        raise TuiGptError(f"torchrun environment: {name}={value[:20]!r} is not a whole number (0, 1, 2...); {_ADVICE}")
    return int(value)


def environment() -> Dist | None:
    """The place torchrun's environment gives this process; None when it sets none of RANK_VARS.

    A partial or malformed one is a one-line error: a stray RANK=1 alone would otherwise make a
    single process skip every save, and a bad WORLD_SIZE would fail deep inside torch.
    """
    missing = [name for name in TORCHRUN_VARS if not os.environ.get(name)]
    if all(name in missing for name in RANK_VARS):
        return None
    if missing:
        given = ", ".join(name for name in TORCHRUN_VARS if name not in missing)
        raise TuiGptError(f"torchrun environment: {given} set, but not {', '.join(missing)}; {_ADVICE}")
    rank, world, local_rank, port = (_whole(name) for name in (*RANK_VARS, "MASTER_PORT"))
    local_world = _whole("LOCAL_WORLD_SIZE", default=world)  # torchrun sets it; other launchers may not
    problem = (
        (world < 1 and f"WORLD_SIZE={world} is not at least 1")
        or (rank >= world and f"RANK={rank} is not below WORLD_SIZE={world}")
        or (not 1 <= local_world <= world and f"LOCAL_WORLD_SIZE={local_world} is not between 1 and WORLD_SIZE={world}")
        or (local_rank >= local_world and f"LOCAL_RANK={local_rank} is not below LOCAL_WORLD_SIZE={local_world}")
        or (not 1 <= port <= 65535 and f"MASTER_PORT={port} is not a port (1 to 65535)")
    )
    if problem:
        raise TuiGptError(f"torchrun environment: {problem}; {_ADVICE}")
    return Dist(rank, world, local_rank, local_world)


def launched() -> bool:
    """Whether torchrun (or a launcher like it) started this process as one of several."""
    env = environment()
    return env is not None and env.world > 1


def current() -> Dist:
    """This process's place in the process group (rank 0 of 1 when there is none)."""
    if not (dist.is_available() and dist.is_initialized()):
        return SINGLE
    world = dist.get_world_size()
    env = environment()
    return Dist(dist.get_rank(), world, env.local_rank if env else 0, env.local_world if env else world)


_timeout_s = DIST_TIMEOUT  # the process group's, for the message when a collective times out


def setup(device: str = "auto", timeout_s: float = DIST_TIMEOUT) -> Dist:
    """Join the process group torchrun describes in the environment; a no-op in a single process.

    Returns this process's Dist. On CUDA each rank takes the GPU of its local rank. A partial or
    malformed torchrun environment is a one-line error (see environment). A collective that waits
    `timeout_s` for a peer fails (`lost_rank` then names the peer as hung) rather than waiting gloo's
    default half hour.
    """
    global _timeout_s
    env = environment()
    if env is None or env.world == 1:  # torchrun with one process needs no process group
        return SINGLE
    if dist.is_initialized():
        return current()
    cuda = device.startswith("cuda") or (device == "auto" and torch.cuda.is_available())
    local_rank = env.local_rank
    if cuda:
        if local_rank >= torch.cuda.device_count():
            raise TuiGptError(
                f"local rank {local_rank} has no GPU: only {torch.cuda.device_count()} visible; "
                f"use --nproc_per_node={torch.cuda.device_count()} or fewer"
            )
        torch.cuda.set_device(local_rank)
    try:
        dist.init_process_group(backend="nccl" if cuda else "gloo", timeout=timedelta(seconds=timeout_s))
        _timeout_s = timeout_s
    except (RuntimeError, ValueError) as exc:
        raise TuiGptError(f"cannot join the torchrun process group: {str(exc).splitlines()[0][:120]}") from None
    d = current()
    if not cuda:
        # N ranks on one CPU share its cores rather than each claiming all of them.
        from tui_gpt.settings import cores

        torch.set_num_threads(max(1, cores() // d.local_world))
    return d


def device_name(device: str, d: Dist) -> str:
    """The device this rank trains on: its own GPU under torchrun on CUDA."""
    if d.world > 1 and (device == "cuda" or (device == "auto" and torch.cuda.is_available())):
        return f"cuda:{d.local_rank}"
    return device


def teardown() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def leave(code: int) -> NoReturn:
    """End this torchrun rank with `code`, past the interpreter's teardown.

    Gloo's threads, destroyed there, sometimes abort a rank ("terminate called without an active
    exception", exit -6) after its work is done; everything is saved and printed by now.
    """
    teardown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


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


def broadcast(obj: T) -> T:
    """Rank 0's `obj` on every rank."""
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=0)
    return box[0]


# What gloo (and NCCL) say when a collective fails because another rank died or hangs.
_GONE = re.compile(
    r"connection (?:closed|reset) by peer|broken pipe|socket timeout|timed out|communicator was aborted", re.I
)
_HUNG = re.compile(r"timeout|timed out", re.I)  # the peer is there but said nothing for the process group's timeout


def lost_rank(exc: BaseException) -> str | None:
    """'rank 1 of 2 is gone (Connection reset by peer)' if `exc` is a collective failing on a lost peer, else None.

    A peer that is there but silent for the process group's timeout 'stopped answering'. Only the
    other rank of two can be named: gloo names the peer's address, or nothing, not its rank.
    """
    if not (dist.is_available() and dist.is_initialized()) or not isinstance(exc, RuntimeError):
        return None
    found = _GONE.search(str(exc))
    if found is None and not isinstance(exc, dist.DistError):
        return None  # any other RuntimeError is a bug or a fault of this rank: its traceback stays
    world, rank = dist.get_world_size(), dist.get_rank()
    if world < 2:
        return None
    who = f"rank {1 - rank} of 2" if world == 2 else f"another of the {world} ranks"
    if found and _HUNG.search(found.group(0)):
        return f"{who} stopped answering (nothing for {_timeout_s:g} s, --dist-timeout)"
    why = found.group(0) if found else str(exc).splitlines()[0][:80]
    return f"{who} is gone ({why})"
