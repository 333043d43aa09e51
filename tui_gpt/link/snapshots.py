"""Weight snapshots from the trainer process to the app: through shared memory, else as safetensors bytes.

Writing GPT-2 small (500 MB) as safetensors bytes cost the trainer about 3 s and the app about 1 s
per snapshot on 2 cores, more than a training step. Through one shared buffer a snapshot costs a
memory copy on each side. The trainer writes the buffer only after the app has copied the last
snapshot out of it (the app says so with `TookWeights`), so a snapshot is never read half written.
Where shared memory is short (a container's 64 MB /dev/shm, say), snapshots travel as bytes.
"""

from __future__ import annotations

import math
import shutil
import sys
from dataclasses import dataclass

import torch
from safetensors.torch import save

SHM_DIR = "/dev/shm"  # where torch's shared memory lives on Linux; a full one would crash the writer
SHM_MARGIN = 2  # want this many times the buffer free before taking it


def state(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """What a snapshot holds: the state dict, less the head, which is tied to the token embedding."""
    return {k: v.detach() for k, v in model.state_dict().items() if k != "lm_head.weight"}


def blob(model: torch.nn.Module) -> bytes:
    """A snapshot as safetensors bytes."""
    return save({k: v.cpu().contiguous() for k, v in state(model).items()})


@dataclass
class SharedWeights:
    """One snapshot's room in shared memory: a flat buffer and where each tensor lies in it."""

    buffer: torch.Tensor  # flat, in shared memory; pickled as a handle to it, not its contents
    layout: list[tuple[str, tuple[int, ...], int]]  # (name, shape, offset in elements)

    @classmethod
    def create(cls, model: torch.nn.Module) -> SharedWeights | None:
        """A shared buffer the size of `model`'s snapshot, or None where shared memory cannot hold it."""
        tensors = state(model)
        dtypes = {t.dtype for t in tensors.values()}
        if len(dtypes) != 1 or not sys.platform.startswith("linux"):
            return None
        dtype = dtypes.pop()
        numel = sum(t.numel() for t in tensors.values())
        try:
            if shutil.disk_usage(SHM_DIR).free < SHM_MARGIN * numel * dtype.itemsize:
                return None
            import torch.multiprocessing

            buffer = torch.empty(numel, dtype=dtype)
            buffer.share_memory_()  # type: ignore[no-untyped-call]  # torch leaves Tensor.share_memory_ unannotated
        except (OSError, RuntimeError):
            return None
        layout, offset = [], 0
        for name, t in tensors.items():
            layout.append((name, tuple(t.shape), offset))
            offset += t.numel()
        return cls(buffer, layout)

    def views(self) -> dict[str, torch.Tensor]:
        """Each tensor of the snapshot, as a view of the buffer (no copy)."""
        return {
            name: self.buffer[offset : offset + math.prod(shape)].view(shape) for name, shape, offset in self.layout
        }

    @torch.no_grad()
    def write(self, model: torch.nn.Module) -> None:
        views = self.views()
        for name, t in state(model).items():
            views[name].copy_(t)
