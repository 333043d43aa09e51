"""Waiting for a condition in tests that drive real processes: poll it, or fail naming what was awaited."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

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
