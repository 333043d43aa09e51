"""The app's handle on the trainer process: start it, send commands, receive events.

No Textual here: events are handed to a callback from a reader thread, and the app turns
them into Textual messages.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import queue
import threading
from collections.abc import Callable

from tui_gpt.protocol import Command, Event, Failed, Quit, Reset, Stopped
from tui_gpt.settings import RunSpec

_ctx = mp.get_context("spawn")


def prepare() -> None:
    """Start multiprocessing's helper process while stderr is still a real file.

    Textual replaces sys.stderr with an object whose fileno() is -1, and spawning the
    resource tracker from inside a running app then fails.
    """
    from multiprocessing import resource_tracker

    resource_tracker.ensure_running()


class TrainerClient:
    def __init__(self, on_event: Callable[[Event], None], threads: int = 1, log: str | None = None) -> None:
        prepare()  # now, while stderr is real: a client is made before its app runs
        self.on_event = on_event
        self.threads = threads
        # The trainer's stdout and stderr go here; set TUI_GPT_TRAINER_LOG to see them.
        self.log = log or os.environ.get("TUI_GPT_TRAINER_LOG")
        self.process: mp.process.BaseProcess | None = None
        self.commands: mp.Queue | None = None
        self.events: mp.Queue | None = None
        self._reader: threading.Thread | None = None
        self._stopping = False

    @property
    def alive(self) -> bool:
        return self.process is not None and self.process.is_alive()

    def start(self, spec: RunSpec) -> None:
        from tui_gpt.worker import trainer_main

        self.stop(save=None)
        self._stopping = False
        self.commands = _ctx.Queue()
        self.events = _ctx.Queue()
        self.process = _ctx.Process(
            target=trainer_main,
            args=(spec, self.commands, self.events, self.threads, self.log),
            name="tui-gpt-trainer",
            daemon=True,
        )
        self.process.start()
        self._reader = threading.Thread(target=self._read, args=(self.process, self.events), daemon=True)
        self._reader.start()

    def _read(self, process: mp.process.BaseProcess, events: mp.Queue) -> None:
        while True:
            try:
                ev = events.get(timeout=0.2)
            except queue.Empty:
                if not process.is_alive():
                    if not self._stopping and process.exitcode not in (0, None):
                        self.on_event(Failed(f"the trainer process died (exit code {process.exitcode})"))
                    return
                continue
            except (EOFError, OSError):
                return
            self.on_event(ev)
            if isinstance(ev, Stopped | Failed) and getattr(ev, "fatal", True):
                return

    def send(self, cmd: Command) -> None:
        if self.alive and self.commands is not None:
            self.commands.put(cmd)

    def reset(self, spec: RunSpec) -> None:
        self.send(Reset(spec))

    def stop(self, save: str | None, timeout: float = 3.0) -> None:
        """Ask the trainer to save (if `save`) and exit; kill it if it does not within `timeout`."""
        proc = self.process
        if proc is None:
            return
        self._stopping = True
        if proc.is_alive():
            self.send(Quit(save))
            proc.join(timeout)
        if proc.is_alive():
            proc.terminate()
            proc.join(0.2)
        if proc.is_alive():
            proc.kill()
            proc.join(0.2)
        for q in (self.commands, self.events):
            if q is not None:
                q.cancel_join_thread()
                q.close()
        self.process = None
