"""The app's handle on the trainer process: start it, send commands, receive events.

No Textual here: events are handed to a callback from a reader thread, and the app turns
them into Textual messages.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import queue
import signal
import threading
import time
from collections.abc import Callable
from multiprocessing.queues import Queue

from tui_gpt.errors import TuiGptError
from tui_gpt.link.preempt import Hold
from tui_gpt.link.protocol import Command, Event, Failed, Moved, Quit, Reset, Saved, Saving, Stopped
from tui_gpt.runs.recorder import Recording
from tui_gpt.settings import RunSpec, cores

_ctx = mp.get_context("spawn")


SAVE_START_TIMEOUT = 60.0  # seconds for a trainer to begin a save asked for on quit; once begun, no limit


def prepare() -> None:
    """Start multiprocessing's helper process while stderr is still a real file.

    Textual replaces sys.stderr with an object whose fileno() is -1, and spawning the
    resource tracker from inside a running app then fails.
    """
    from multiprocessing import resource_tracker

    # The tracker unlinks the trainer link's semaphores if the app dies unclean; a closed terminal's
    # SIGHUP must not end it first (it did, and they stayed in /dev/shm), so it ignores SIGHUP,
    # a disposition it keeps across its exec. Only the main thread may change one.
    main = threading.current_thread() is threading.main_thread() and hasattr(signal, "SIGHUP")
    old = signal.signal(signal.SIGHUP, signal.SIG_IGN) if main else None
    try:
        resource_tracker.ensure_running()
    finally:
        if main:
            signal.signal(signal.SIGHUP, signal.SIG_DFL if old is None else old)
    check_shared_memory()


def no_room(exc: OSError) -> TuiGptError:
    """The one line for shared memory that cannot be had: the trainer link needs some in /dev/shm."""
    why = exc.strerror or str(exc)
    return TuiGptError(
        f"no shared memory for the trainer process ({why}); it lives in /dev/shm: free some there "
        "(see df -h /dev/shm; sem.mp-* files no running program uses can go), or mount it larger"
    )


def check_shared_memory() -> None:
    """Raise a one-line TuiGptError if the semaphores the trainer link needs cannot be made."""
    try:
        lock = _ctx.Lock()
    except OSError as exc:
        raise no_room(exc) from None
    del lock


class TrainerClient:
    def __init__(
        self,
        on_event: Callable[[Event], None],
        threads: int | None = None,
        log: str | None = None,
        out: str | None = None,
        autosave: float = 0,
        recording: Recording | None = None,
    ) -> None:
        prepare()  # now, while stderr is real: a client is made before its app runs
        self.on_event = on_event
        self.threads = threads or cores()
        self.hold = Hold(_ctx)  # the app stops the trainer while it answers a key
        self.out = out  # the checkpoint folder: the trainer holds its lock, and autosaves there
        self.autosave = autosave  # seconds between autosaves (0: none)
        self.recording = recording  # where the trainer records its runs (the registry, --log); None: nowhere
        # The trainer's stdout and stderr go here; set TUI_GPT_TRAINER_LOG to see them.
        self.log = log or os.environ.get("TUI_GPT_TRAINER_LOG")
        self.process: mp.process.BaseProcess | None = None
        self.commands: Queue[Command] | None = None
        self.events: Queue[Event] | None = None
        self._reader: threading.Thread | None = None
        self._stopping = False
        self._saving = False  # a save has begun and not yet ended
        self._outcome: Saved | Failed | None = None  # how the save asked for by stop() ended
        self._settled = threading.Event()

    @property
    def alive(self) -> bool:
        return self.process is not None and self.process.is_alive()

    def start(self, spec: RunSpec) -> None:
        from tui_gpt.link.worker import trainer_main

        self.stop(save=None)
        self._stopping = False
        try:
            self.commands = _ctx.Queue()
            self.events = _ctx.Queue()
        except OSError as exc:  # no room for their semaphores: said as a trainer failure is, not a crash
            return self._abandon(str(no_room(exc)))
        self.process = _ctx.Process(
            target=trainer_main,
            args=(spec, self.commands, self.events, self.threads, self.log, self.out, self.autosave, self.hold.since),
            kwargs={"recording": self.recording},
            name="tui-gpt-trainer",
            daemon=True,
        )
        try:
            self.process.start()
        except OSError as exc:  # no memory or no process slot left
            return self._abandon(f"cannot start the trainer process: {exc.strerror or exc}")
        self.hold.attach(self.process.pid)
        self._reader = threading.Thread(target=self._read, args=(self.process, self.events), daemon=True)
        self._reader.start()

    def _abandon(self, why: str) -> None:
        """A start that failed half-way: nothing of it is left running or open, and the app is told."""
        for q in (self.commands, self.events):
            if q is not None:
                q.cancel_join_thread()
                q.close()
        self.process = self.commands = self.events = None
        self.on_event(Failed(why))

    def _read(self, process: mp.process.BaseProcess, events: Queue[Event]) -> None:
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
            self._track(ev)
            self.on_event(ev)
            if isinstance(ev, Stopped | Failed) and getattr(ev, "fatal", True):
                return

    def _track(self, ev: Event) -> None:
        """Follow saves, so that stop() can wait for one however long it takes, and report it; and the
        run's folder, so that a restarted trainer saves where the run does (a reset may have moved it)."""
        if isinstance(ev, Moved):
            self.out = ev.out
        elif isinstance(ev, Saving):
            self._saving = True
        elif isinstance(ev, Saved) or (isinstance(ev, Failed) and ev.save_path):
            self._saving = False
            if self._stopping:
                self._outcome = ev
                self._settled.set()
        elif isinstance(ev, Stopped) or (isinstance(ev, Failed) and ev.fatal):
            self._settled.set()

    def send(self, cmd: Command) -> None:
        if self.alive and self.commands is not None:
            self.commands.put(cmd)

    def reset(self, spec: RunSpec) -> None:
        self.send(Reset(spec))

    def stop(self, save: str | None, timeout: float = 3.0) -> Saved | Failed | None:
        """Ask the trainer to save (if `save`) and exit; kill it if it does not within `timeout`.

        A save in progress is waited for however long it takes. Returns how the save ended:
        Saved, or Failed (the trainer then keeps running, so the caller may stop it without a
        save), or None when nothing was saved.
        """
        proc = self.process
        if proc is None:
            return None
        self.hold.release()  # a stopped trainer could neither save nor quit
        self._stopping = True
        self._outcome = None
        self._settled.clear()
        if proc.is_alive():
            self.send(Quit(save))
            # The trainer takes the command after its current step, which for a big model is slow.
            deadline = time.monotonic() + (max(timeout, SAVE_START_TIMEOUT) if save else timeout)
            while proc.is_alive() and not self._settled.is_set():
                if time.monotonic() > deadline and not self._saving:
                    break
                self._settled.wait(0.05)
            if isinstance(self._outcome, Failed):
                self._stopping = False
                return self._outcome
            proc.join(max(0.0, deadline - time.monotonic()) if not self._outcome else timeout)
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
        self.hold.attach(None)
        return self._outcome
