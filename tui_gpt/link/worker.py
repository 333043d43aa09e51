"""The trainer process: runs `Trainer` and talks to the app only through `protocol` messages.

Spawned, so it must import nothing heavy at module level and never Textual.
"""

from __future__ import annotations

import contextlib
import ctypes
import multiprocessing
import os
import queue
import signal
import sys
import time
import traceback
from collections.abc import Iterator
from dataclasses import asdict, replace
from multiprocessing.queues import Queue
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tui_gpt.engine.savedir import Autosave, CheckpointLock, fresh_sibling, is_checkpoint_dir
from tui_gpt.engine.session import LoadedRun, open_run
from tui_gpt.errors import TuiGptError
from tui_gpt.lifeline import on_parent_death
from tui_gpt.link.preempt import start_watchdog
from tui_gpt.link.protocol import (
    Command,
    CountTokens,
    Event,
    ExampleStepped,
    Failed,
    Loading,
    Losses,
    Memorize,
    Memorized,
    Moved,
    Pause,
    Quit,
    Ready,
    Reset,
    Resume,
    Save,
    Saved,
    Saving,
    SetCausal,
    SetEvalInterval,
    SetLr,
    SetThreads,
    SharedBuffer,
    Status,
    Step,
    StepOn,
    Stopped,
    TokenCounts,
    TookWeights,
    Weights,
)
from tui_gpt.runs.recorder import Recorder, Recording
from tui_gpt.settings import LARGE_PARAMS, RunSpec

if TYPE_CHECKING:
    from tui_gpt.engine.trainer import TrainEvent
    from tui_gpt.link.snapshots import SharedWeights
    from tui_gpt.probes.memorization import NgramIndex

LOSS_EVERY = 0.25  # seconds between loss batches
WEIGHTS_EVERY = 1.0  # seconds between weight snapshots
LARGE_WEIGHTS_EVERY = 5.0  # for a large model (settings.LARGE_PARAMS): its app's refresh costs training more
COMPARE_CHARS = 1_000_000  # of the text, to train the tokenizers the tokenizer view compares


def _silence(log: str | None) -> None:
    """Point stdout and stderr away from the terminal the app is drawing on."""
    target = os.open(log or os.devnull, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    os.dup2(target, 1)
    os.dup2(target, 2)
    sys.stdout = open(1, "w", closefd=False)  # noqa: SIM115
    sys.stderr = open(2, "w", closefd=False)  # noqa: SIM115


def _passages(run: LoadedRun, n: int = 5) -> list[str]:
    """A few validation passages, one context long, for the examples pane."""
    val, size = run.data.val, run.trainer.model.config.block_size + 1
    starts = range(0, max(1, len(val) - size), max(1, (len(val) - size) // n))
    return [run.tokenizer.decode(val[i : i + size].tolist()) for i in list(starts)[:n]]


def in_force(run: LoadedRun) -> RunSpec:
    """The run's settings as the trainer has them, copied to send: the trainer's are the one source.

    Its training settings are `run.trainer.config` (the spec's `train` is that same object, see
    `LabCommands`), and whether it is causal is its model's config, which `SetCausal` switches.
    """
    return replace(run.spec, causal=run.trainer.model.config.causal, train=replace(run.trainer.config))


def describe_run(run: LoadedRun) -> Ready:
    """The Ready event for `run`: what the app needs to probe and describe it."""
    from tui_gpt.probes.predict import baselines

    tr = run.trainer
    b = baselines(run.data.train, run.data.val, run.tokenizer.vocab_size)
    return Ready(
        tokenizer_json=run.tokenizer.hf.to_str(),
        model_config=tr.model.config.to_dict(),
        corpus={
            "name": run.corpus.name,
            "digest": run.corpus.digest,  # the registry's text_digest: the app overlays earlier runs on it
            "files": len(run.corpus.documents),
            "chars": run.corpus.chars,
            "train_tokens": len(run.data.train),
            "val_tokens": len(run.data.val),
            "skipped": len(run.corpus.skipped),
            "tokenizer": run.tokenizer.kind,
            "vocab_size": run.tokenizer.vocab_size,
            "params": tr.model.num_params(),
            "tokens_per_step": tr.tokens_per_step,  # the overlays' tokens axis for the live run
            "passages": _passages(run),
        },
        baselines={"uniform": b.uniform, "unigram": b.unigram, "bigram": b.bigram},
        history=tr.history.to_dict(),
        step=tr.step,
        spec=in_force(run),
        device=str(tr.device),
        dtype=str(tr.dtype).removeprefix("torch."),
        choice=tr.choice_note,
    )


def step_on_example(run: LoadedRun, ids: list[int]) -> ExampleStepped | None:
    """One optimizer step on prefix ids[:-1] -> target ids[-1], reported with before and after."""
    from tui_gpt.probes.predict import predict, target_prob

    if len(ids) < 2:
        return None
    target = ids[-1]

    def look() -> tuple[float, list[tuple[str, float]]]:
        model, tok = run.trainer.model, run.tokenizer
        top = predict(model, tok, ids[:-1], k=5, attention=False).guesses
        return target_prob(model, ids[:-1], target), [(g.text, g.prob) for g in top]

    p_before, top_before = look()
    run.trainer.step_on(ids)
    p_after, top_after = look()
    return ExampleStepped(target, p_before, p_after, top_before, top_after)


class LabCommands:
    """The commands that act on the run itself, answered with events.

    The trainer loop and the app tests' fake trainer both answer through this one class.
    """

    def __init__(self, run: LoadedRun) -> None:
        # One object for the run's training settings: the trainer's. A command changes it once, and the
        # spec sees it; a resumed run's spec now holds the checkpoint's settings, not the defaults.
        run.spec.train = run.trainer.config
        self.run = run
        self.index: NgramIndex | None = None  # n-grams of the training text, built on first use

    @property
    def spec(self) -> RunSpec:
        """The settings in force, to report (`in_force`)."""
        return in_force(self.run)

    def handle(self, cmd: Command) -> list[Event]:
        run, tr = self.run, self.run.trainer
        match cmd:
            case SetLr(lr=lr):
                tr.set_lr(float(lr))
            case SetEvalInterval(interval=interval):
                tr.config.eval_interval = int(interval)
            case SetCausal(causal=causal):
                tr.set_causal(bool(causal))
            case StepOn(ids=ids):
                result = step_on_example(run, list(ids))
                return [result] if result is not None else []
            case CountTokens(text=text):
                from tui_gpt.probes.tokenview import token_counts

                return [TokenCounts(text, token_counts(text, run.corpus.sample_texts(COMPARE_CHARS)))]
            case Memorize(ids=ids, min_len=n):
                from tui_gpt.probes.memorization import NgramIndex

                run.data.check()  # the index reads every training id
                if self.index is None or self.index.n != n:
                    self.index = NgramIndex(run.data.train, n)
                return [Memorized(list(ids), self.index.spans(list(ids)), n)]
        return []


class TrainerLoop:
    def __init__(
        self,
        spec: RunSpec,
        commands: Queue[Command],
        events: Queue[Event],
        autosave: tuple[str, float] | None = None,
        out: str | None = None,
        recording: Recording | None = None,
    ) -> None:
        self.spec = spec
        self.recording = recording  # where each run is recorded; None: nowhere
        self.recorder = Recorder.none()
        self.saved_to: str | None = None  # the run's last checkpoint
        self.autosave_to = autosave[0] if autosave else None  # save there this often, and when the app dies
        self.autosave = Autosave(autosave[1] if autosave else 0, saved_step=0)
        self.out = out  # the run's checkpoint folder: where a run that cannot go on saves before it stops
        self.kept: set[Path] = set()  # folders a reset moved away from: their checkpoints are never replaced
        self.moved_lock: CheckpointLock | None = None  # the lock of the folder a reset moved to
        self.commands = commands
        self.events = events
        self.paused = False
        self.pending_steps = 0
        self.run: LoadedRun | None = None
        self.steps: Iterator[TrainEvent] = iter(())  # the open run's steps
        self.batch: list[dict[str, Any]] = []
        self.last_losses = 0.0
        self.last_weights = 0.0
        self.running = True
        self.orphaned = False
        self.commands_on_run: LabCommands | None = None
        self.shared: SharedWeights | None = None  # the run's shared memory, or None: snapshots go as bytes
        self.shared_free = True  # the app has copied the last snapshot out of `shared`
        self.weights_due = False  # a snapshot waits for `shared` to be free
        self.buffer = 0  # which shared buffer is the run's: one per run
        self.weights_every = WEIGHTS_EVERY  # seconds between snapshots while training

    def open(self, spec: RunSpec) -> None:
        """Build the run for `spec` and announce it to the app."""

        last = [0.0]

        def progress(what: str, done: int, total: int) -> None:
            now = time.monotonic()
            if now - last[0] > 0.1 or done == total:
                last[0] = now
                self.events.put(Loading(what, done, total))

        self.events.put(Loading("loading text", 0, 1))
        run = open_run(spec, progress)
        self.run, self.spec = run, run.spec
        self.commands_on_run = LabCommands(run)
        self.record(run)
        self.autosave.step = run.trainer.step
        self.steps = run.trainer.run()
        self.announce()

    @property
    def opened(self) -> LoadedRun:
        """The open run; only code that runs after `open` asks for it."""
        if self.run is None:
            raise RuntimeError("the trainer has no run open yet")
        return self.run

    def record(self, run: LoadedRun) -> None:
        """End the last run's record (a new run replaces it) and start this one's; a refusal only warns."""
        self.recorder.finish("stopped", self.saved_to)
        self.recorder, self.saved_to = Recorder.none(), None
        if self.recording is None:
            return

        def warn(message: str) -> None:
            self.events.put(Failed(message, fatal=False))

        try:
            self.recorder = Recorder.start("app", run, self.recording, self.out, warn)
        except TuiGptError as exc:
            warn(f"{exc}; this run is not recorded")

    def announce(self) -> None:
        """Tell the app everything it needs about the current run, then send its weights."""
        from tui_gpt.link.snapshots import SharedWeights

        run = self.opened
        self.events.put(describe_run(run))
        large = run.trainer.model.num_params() > LARGE_PARAMS
        self.weights_every = LARGE_WEIGHTS_EVERY if large else WEIGHTS_EVERY
        self.shared = SharedWeights.create(run.trainer.model)
        self.shared_free, self.weights_due = True, False
        if self.shared is not None:
            self.buffer += 1
            self.events.put(SharedBuffer(self.shared, self.buffer))
        self.send_weights()

    def send_weights(self) -> None:
        """A snapshot to the app; through shared memory, once the app has copied out the last one."""
        tr = self.opened.trainer
        self.last_weights = time.monotonic()
        if self.shared is None:
            from tui_gpt.link.snapshots import blob

            self.events.put(Weights(tr.step, blob(tr.model)))
        elif self.shared_free:
            self.shared.write(tr.model)
            self.shared_free, self.weights_due = False, False
            self.events.put(Weights(tr.step, None))
        else:
            self.weights_due = True  # sent as soon as the buffer is free

    def flush_losses(self) -> None:
        if self.batch:
            self.events.put(Losses(self.batch))
            self.batch = []
        self.last_losses = time.monotonic()

    def handle(self, cmd: Command) -> None:
        run = self.run
        built = run is not None
        if isinstance(cmd, TookWeights):
            self.shared_free = self.shared_free or cmd.buffer == self.buffer
            if built and self.weights_due:
                self.send_weights()
            return
        match cmd:
            case Quit(save=save):
                # A failed save keeps the run alive: the app asks whether to quit without it.
                if not (save and built) or self.save(save):
                    self.running = False
                    return
            case Pause():
                self.paused = True
            case Resume():
                self.paused = False
            case Step(n=n):
                self.pending_steps += int(n)
            case Save(path=path) if built:
                self.save(path)
            case SetThreads(n=n) if run is not None:
                run.trainer.set_threads(n)  # from the next step
            case Reset(spec=spec):
                self.reset(spec, built)
            case _ if self.commands_on_run is not None:
                for ev in self.commands_on_run.handle(cmd):
                    self.events.put(ev)
                if isinstance(cmd, StepOn):
                    self.send_weights()
        if self.run is not None and self.commands_on_run is not None:
            self.events.put(Status(self.paused, self.run.trainer.step, self.commands_on_run.spec))

    def reset(self, spec: RunSpec, built: bool) -> None:
        """Start again from `spec`, in a fresh folder if the run's folder holds a checkpoint: a new run never
        replaces one unasked. Bad new text (or no folder to move to): say so, and carry on with the old run."""
        before, kept = (self.out, self.autosave_to, self.moved_lock), set(self.kept)
        try:
            moved = self.move_out()
            self.open(spec)
        except TuiGptError as exc:
            if self.moved_lock is not before[2] and self.moved_lock is not None:
                self.moved_lock.__exit__()  # an unused folder: removed with its lock
            (self.out, self.autosave_to, self.moved_lock), self.kept = before, kept
            self.events.put(Failed(f"{exc}; kept the current run", fatal=False))
            if built:
                self.announce()
            return
        if moved is not None:
            if before[2] is not None:
                before[2].__exit__()
            self.events.put(Moved(str(self.out), str(moved)))

    def move_out(self) -> Path | None:
        """If the run's folder holds a checkpoint, take a fresh one beside it as the run's; the folder left."""
        if not self.out or not is_checkpoint_dir(Path(self.out)):
            return None
        kept = Path(self.out).expanduser().resolve()
        lock = CheckpointLock(fresh_sibling(kept))
        lock.__enter__()
        self.kept.add(kept)
        self.moved_lock, self.out = lock, str(lock.out)
        if self.autosave_to:
            self.autosave_to = self.out
        return kept

    def release(self) -> None:
        """Let go of the folder a reset moved to (the first folder's lock is the caller's)."""
        if self.moved_lock is not None:
            self.moved_lock.__exit__()
            self.moved_lock = None

    def save(self, path: str) -> bool:
        """Save to `path` and say so; on any failure say why in one line and carry on."""
        run = self.opened
        if self.out and Path(path).expanduser().resolve() in self.kept:
            path = self.out  # an app that has not yet heard of the move: never over the checkpoint kept
        step = run.trainer.step
        self.events.put(Saving(path, step))
        try:
            out = run.save(Path(path))
        except TuiGptError as exc:  # save_checkpoint's own line already says where, why and what is intact
            message = str(exc)
        except Exception as exc:  # anything else may not end the run either
            why = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            message = f"could not save to {path}: {why}; the previous checkpoint is intact"
        else:
            self.autosave.saved(step)
            self.saved_to = str(out)
            self.events.put(Saved(str(out), step))
            return True
        self.events.put(Failed(message, fatal=False, save_path=path))
        return False

    def save_best(self) -> None:
        """--keep best, after an evaluation: a new best val loss's weights to the run folder's best/; failing warns."""
        if not self.out:
            return
        try:
            self.opened.save_best(self.out, evaluated=True)
        except TuiGptError as exc:  # the run goes on, and its own checkpoint is untouched
            self.events.put(Failed(f"best weights not kept: {exc}", fatal=False))

    def loop(self) -> None:
        """Open the run and train it until the app quits; record how it ended."""
        self.open(self.spec)
        try:
            self._train()
        except BaseException:
            self.recorder.finish("failed", self.saved_to)
            raise
        self.recorder.finish("stopped", self.saved_to)  # the app quit, or was killed

    def _train(self) -> None:
        from tui_gpt.engine.tokencache import Cut

        try:
            self._loop()
        except Cut as exc:  # the text is gone from under the run, not what it learned: save that
            self.flush_losses()
            step = self.opened.trainer.step
            if not self.autosave.unsaved(step):
                kept = f"step {step} is saved" + (f" in {self.out}" if self.out else "")
            elif self.out and self.save(self.out):
                kept = f"saved step {step} to {self.out}"
            else:
                kept = f"step {step} is not saved"
            raise TuiGptError(f"{exc}; {kept}") from None

    def _loop(self) -> None:
        parent = multiprocessing.parent_process()
        while self.running:
            if parent is not None and not parent.is_alive():
                # Orphaned (the app was killed): save what was trained, since nobody will quit us.
                self.orphaned = True
                if self.autosave_to and self.autosave.unsaved(self.opened.trainer.step):
                    self.save(self.autosave_to)
                break
            idle = self.paused and not self.pending_steps
            try:
                cmd = self.commands.get(timeout=0.1) if idle else self.commands.get_nowait()
            except queue.Empty:
                cmd = None
            if cmd is not None:
                self.handle(cmd)
                continue
            if idle:
                continue
            ev = next(self.steps)
            self.recorder.event(ev)
            if ev.val_loss is not None:
                self.save_best()
            if self.pending_steps:
                self.pending_steps -= 1
            self.batch.append(asdict(ev))
            now = time.monotonic()
            if now - self.last_losses >= LOSS_EVERY or self.paused:
                self.flush_losses()
            if now - self.last_weights >= self.weights_every or self.paused:
                self.send_weights()
            if self.autosave_to and self.autosave.due(self.opened.trainer.step):
                self.save(self.autosave_to)
        self.flush_losses()
        self.events.put(Stopped(self.run.trainer.step if self.run else 0))


def trainer_main(
    spec: RunSpec,
    commands: Queue[Command],
    events: Queue[Event],
    threads: int = 1,
    log: str | None = None,
    out: str | None = None,
    autosave: float = 0,
    held_since: ctypes.c_double | None = None,
    recording: Recording | None = None,
) -> None:
    """Entry point of the trainer process; it alone writes to `out`, and holds the folder's lock.

    `held_since` is the app's Hold.since: the app may stop this process while it answers a key,
    and the watchdog started here continues it if the app holds it too long or dies.
    """
    _silence(log)
    # Out of the terminal's process group: a Ctrl+C, a hang-up or a group SIGTERM reaches the app,
    # which saves through us and then ends us, instead of killing us mid-save.
    with contextlib.suppress(OSError):
        os.setsid()
    # The app gone, even with the watchdog killed first, a held (stopped) trainer is continued by the
    # kernel, notices its orphaning and saves. SIGCONT does no harm if it comes early: the app may
    # start the trainer from a thread that ends first (lifeline.py), which at worst ends a hold.
    on_parent_death(signal.SIGCONT)
    start_watchdog(held_since)  # before torch: the fork copies a process with no threads yet
    try:
        import torch

        torch.set_num_threads(threads)
        loop = TrainerLoop(spec, commands, events, (out, autosave) if out and autosave else None, out, recording)
        with CheckpointLock(Path(out)) if out else contextlib.nullcontext():
            try:
                loop.loop()
            finally:
                loop.release()
        if loop.orphaned:
            events.cancel_join_thread()  # the pipe has no reader: do not wait to flush it
    except TuiGptError as exc:
        events.put(Failed(str(exc)))
    except Exception as exc:  # report anything, so the app can show it and offer a restart
        events.put(Failed(f"{type(exc).__name__}: {exc}", traceback.format_exc()))
    finally:
        events.close()
        events.join_thread()
        # Everything is saved and sent. Skip the interpreter's teardown of torch, which takes
        # most of a second, so that quitting the app is quick.
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(0)
