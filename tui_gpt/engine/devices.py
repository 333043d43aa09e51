"""Which device a run trains on, and the one check that this torch, on this machine, has it.

`--device` passes the settings' rule first (auto, cpu, cuda, cuda:N or mps, torch-free); whether the
device is here needs torch, so it is checked here: by `session.preflight` and `session.open_run`
before anything is written, and by `pick_device`, which every trainer and model load goes through.
"""

from __future__ import annotations

import torch

from tui_gpt.errors import TuiGptError
from tui_gpt.settings import RULES, is_device

__all__ = ["check_device", "device_problem", "pick_device"]

_INSTEAD = "use --device cpu, or auto (CUDA, then MPS, then CPU)"


def _mps_available() -> bool:
    mps = getattr(torch.backends, "mps", None)
    return bool(mps is not None and mps.is_available())


def device_problem(name: str) -> str | None:
    """Why a run cannot train on device `name` here ("--device cuda: ..."), or None if it can."""
    if not is_device(name):
        return f"--device must be {RULES['device'].allowed}, got {str(name)[:20]!r}"
    kind, _, index = name.partition(":")
    if kind == "cuda":
        if not torch.cuda.is_available():
            built = "was built without CUDA" if torch.version.cuda is None else "sees no CUDA GPU"
            return f"--device {name}: this torch ({torch.__version__}) {built}; {_INSTEAD}"
        count = torch.cuda.device_count()
        if index and int(index) >= count:
            return f"--device {name}: only {count} GPU{'s' if count != 1 else ''} visible (cuda:0 to cuda:{count - 1})"
    if kind == "mps" and not _mps_available():
        return f"--device {name}: Apple's MPS is not available to this torch ({torch.__version__}); {_INSTEAD}"
    return None


def check_device(name: str) -> None:
    """Raise the one-line error for a device this torch cannot train on."""
    if why := device_problem(name):
        raise TuiGptError(why)


def pick_device(name: str = "auto") -> torch.device:
    """CUDA, then Apple MPS, then CPU, unless a device is named; a named one must be here (`check_device`)."""
    if name != "auto":
        check_device(name)
        return torch.device(name)
    if torch.cuda.is_available():
        return torch.device("cuda")
    if _mps_available():
        return torch.device("mps")
    return torch.device("cpu")
