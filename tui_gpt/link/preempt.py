"""The person first: the app stops the trainer process while it answers a key, and a watchdog sees it go on.

Stopping is SIGSTOP, so the trainer gives up every core at once, even in the middle of a step (a
GPT-2 step takes seconds), and SIGCONT gives them back when the answer is on screen. Training is
exact: a stopped process computes nothing differently, it only waits.

A stopped process cannot save itself, so a watchdog forked from the trainer (before torch is
imported) continues it when the app has held it for longer than MAX_HOLD, or when the app is gone
(killed, even with SIGKILL): the trainer then notices its orphaning and saves, as it always has.
"""

from __future__ import annotations

import contextlib
import ctypes
import multiprocessing as mp
import os
import select
import signal
import time
from multiprocessing.context import BaseContext

from tui_gpt.lifeline import on_parent_death

SUPPORTED = hasattr(signal, "SIGSTOP") and hasattr(os, "fork")
MAX_HOLD = 2.0  # seconds a trainer may stay stopped before the watchdog continues it anyway
POLL = 0.02  # seconds between the watchdog's looks


class Hold:
    """The app's side: stop and continue one trainer process, and say since when it is stopped.

    `since` is shared memory (a RawValue made before the trainer is spawned and passed to it):
    the watchdog reads it to bound a hold. 0.0 means the trainer runs.
    """

    def __init__(self, ctx: BaseContext) -> None:
        self.since = ctx.RawValue(ctypes.c_double, 0.0)  # typecode "d"
        self.pid: int | None = None
        self.holds = 0  # how many times the trainer was stopped (for tests and the bench)

    @property
    def held(self) -> bool:
        return self.since.value > 0.0

    def attach(self, pid: int | None) -> None:
        """Follow a new trainer process (None: none), never leaving the old one stopped."""
        self.release()
        self.pid = pid

    def stop(self) -> None:
        """Stop the trainer now; a no-op if it is already stopped or there is none."""
        if not SUPPORTED or self.pid is None or self.held:
            return
        self.since.value = time.monotonic()
        try:
            os.kill(self.pid, signal.SIGSTOP)
        except ProcessLookupError:
            self.since.value = 0.0
            return
        self.holds += 1

    def release(self) -> None:
        """Let the trainer go on (also when the watchdog already did)."""
        if not self.held:
            return
        self.since.value = 0.0
        if self.pid is not None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.pid, signal.SIGCONT)


def start_watchdog(since: ctypes.c_double | None) -> int | None:
    """Fork the watchdog of this (trainer) process; returns its pid, or None where it cannot run.

    Call it before importing torch or starting threads: the child runs plain Python only.
    """
    parent = mp.parent_process()
    if not SUPPORTED or since is None or parent is None:
        return None
    app_gone = parent.sentinel  # readable once the app process has ended, whatever ended it
    trainer = os.getpid()
    pid = os.fork()
    if pid:
        return pid
    try:  # the watchdog: holds no pipe of the trainer's open, so it never keeps one alive
        os.closerange(3, app_gone)
        os.closerange(app_gone + 1, 1 << 16)
        if on_parent_death(signal.SIGKILL, trainer):  # forked by the trainer's only thread: it dies with it
            _watch(trainer, app_gone, since)
    finally:
        os._exit(0)


def _watch(trainer: int, app_gone: int, since: ctypes.c_double) -> None:
    while os.getppid() == trainer:
        if select.select([app_gone], [], [], POLL)[0]:
            os.kill(trainer, signal.SIGCONT)  # the app is gone: the trainer saves and ends
            return
        held = since.value
        if held and time.monotonic() - held > MAX_HOLD:
            since.value = 0.0
            os.kill(trainer, signal.SIGCONT)
