"""A terminal that ends ends the app: saved, within seconds, whatever Textual is doing.

Closing a terminal (a tmux server killed, an ssh link dropped, a window closed) sends SIGHUP and
turns every write to it into EIO. Textual's writer thread died on the first EIO; thirty writes later
its queue was full, and the app's own thread blocked for good in `queue.put` (`App._shutdown` ->
`disable_input`), where no handler of the event loop runs: the app outlived its terminal, deaf to
every signal. So:
- `TerminalDriver`'s file drops what it cannot write once the terminal is gone, and says so (HungUp);
- `Deadline` backs up every hang-up and signal from a thread of its own: once the quit's save is done
  (or, if the event loop never took the signal, once it has saved through the trainer itself), the app
  has GRACE seconds to end by itself before the process ends without it.
"""

from __future__ import annotations

import contextlib
import os
import signal
import threading
import time
from typing import TYPE_CHECKING, Any

from textual.drivers.linux_driver import LinuxDriver
from textual.message import Message

from tui_gpt.app.served import HungUp
from tui_gpt.app.terminal_keys import as_key

if TYPE_CHECKING:
    from tui_gpt.app.state import LiveRun

TAKE_SIGNAL = 2.0  # seconds for the event loop to take a signal and begin the quit's save
GRACE = 3.0  # seconds for the app to end by itself once the save is done (a terminal still there: more)
GRACE_ALIVE = 10.0  # the same when the terminal is still there: Textual gives it back, and a line is printed


class GoneFile:
    """The driver's terminal, where a write that fails (EIO: the terminal is gone) is dropped, not raised."""

    def __init__(self, file: Any, on_gone: Any) -> None:
        self._file = file
        self._on_gone = on_gone
        self.gone = False

    def _lost(self) -> None:
        if not self.gone:
            self.gone = True
            self._on_gone()

    def write(self, text: str) -> int:
        if not self.gone:
            try:
                return self._file.write(text)
            except (OSError, ValueError):  # EIO, or a file closed under us
                self._lost()
        return len(text)

    def flush(self) -> None:
        if not self.gone:
            try:
                self._file.flush()
            except (OSError, ValueError):
                self._lost()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._file, name)  # fileno, isatty, encoding…


class TerminalDriver(LinuxDriver):
    """Textual's Linux driver, where a terminal that went away is a hang-up, never a stuck app."""

    def start_application_mode(self) -> None:
        self._file = GoneFile(self._file, self._gone)  # type: ignore[assignment]
        super().start_application_mode()

    def process_message(self, message: Message) -> None:
        super().process_message(as_key(message))  # shift+F3 read as a cursor report (terminal_keys.py)

    def _gone(self) -> None:
        """Called from the writer thread: the app saves and ends, and a deadline makes sure of it."""
        app: Any = self._app
        deadline = getattr(app, "deadline", None)
        if deadline is not None:
            deadline.start(signal.SIGHUP, terminal_gone=True)
        app.post_message(HungUp())


def terminal_driver(driver: type[Any]) -> type[Any]:
    """The driver to use in place of `driver`: ours where Textual chose its Linux driver."""
    return TerminalDriver if driver is LinuxDriver else driver


class Deadline:
    """Ends the process after a hang-up or a signal if the app does not end by itself; never before a save."""

    def __init__(self, client: Any, run: LiveRun) -> None:
        self.client, self.run = client, run
        self.code: int | None = None  # the exit status it will end with (128 + the signal)
        self._alive_grace = True
        self._lock = threading.Lock()

    def start(self, sig: int, terminal_gone: bool = False) -> None:
        """Idempotent, and safe from a signal handler or any thread."""
        with self._lock:
            if terminal_gone:
                self._alive_grace = False
            if self.code is not None:
                return
            self.code = 128 + sig
        threading.Thread(target=self._run, name="tui-gpt-deadline", daemon=True).start()

    def _run(self) -> None:
        time.sleep(TAKE_SIGNAL)
        if not self.run.leaving:  # the event loop never took it: it is stuck; save from here
            self.run.leaving = True
            self.client.stop(save=self.run.out if self.run.ready is not None else None)
        while getattr(self.client, "process", None) is not None:  # the quit's save, however long it takes
            time.sleep(0.05)
        time.sleep(GRACE_ALIVE if self._alive_grace else GRACE)
        end(self.code or 128 + signal.SIGHUP)


def end(code: int) -> None:
    """End the process now: the trainer link's semaphores unlinked first, so /dev/shm keeps nothing."""
    from multiprocessing import util

    with contextlib.suppress(Exception):
        util._run_finalizers(0)  # type: ignore[attr-defined]
    os._exit(code)
