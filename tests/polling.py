"""Waiting for a condition in tests that drive real processes: poll it, or fail naming what was awaited."""

from __future__ import annotations

import queue
import time
from collections.abc import Callable
from typing import Any, TypeVar

from tui_gpt.link.protocol import Losses

T = TypeVar("T")


def wait(what: str, check: Callable[[], T], timeout: float = 20.0, every: float = 0.1) -> T:
    """Poll `check` every `every` seconds until it returns something true, or fail naming `what`."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        value = check()
        if value:
            return value
        time.sleep(every)
    raise AssertionError(f"timed out waiting for {what}")


def until_step(events: queue.Queue[Any], seen: list[Any], step: int) -> None:
    """Move a trainer loop's events into `seen` until a loss batch reaches `step`, or fail."""

    def trained() -> bool:
        while not events.empty():
            seen.append(events.get())
        return any(isinstance(ev, Losses) and ev.events[-1]["step"] >= step for ev in seen)

    wait(f"{step} steps", trained)
