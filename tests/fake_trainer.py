"""A fake trainer for the app tests: deterministic, in-process, answering lab commands with the worker's own code.

`FakeTrainer` implements the client interface that `GPTApp` expects from `TrainerClient`
(`start`, `send`, `reset`, `stop`, `alive`), but instead of a process it builds a real, seeded
tiny model in this process, trains it a fixed number of steps once (cached for the session) and
delivers `Ready`, a fixed synthetic `Losses` curve and `Weights` through the callback,
synchronously. Nothing races with the UI: every event is delivered from the call that causes it.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

from tui_gpt.link.protocol import (
    Command,
    Failed,
    Loading,
    Losses,
    Pause,
    Quit,
    Ready,
    Reset,
    Resume,
    Save,
    Saved,
    SetThreads,
    Status,
    Step,
    StepOn,
    Stopped,
    Weights,
)
from tui_gpt.link.worker import LabCommands
from tui_gpt.settings import RunSpec

TRAIN_STEPS = 150  # real optimizer steps of the fake's model, taken once per spec and cached

# Bundled fables: the corpus name ("fables (bundled)") is the same on every machine, unlike a tmp path.
FAKE_SPEC = RunSpec(
    sources=["fables"],
    tokenizer="char",
    n_layer=2,
    n_head=2,
    n_embd=32,
    block_size=32,
    train={
        "seed": 0,
        "dtype": "float32",
        "device": "cpu",
        "eval_interval": 0,
        "batch_size": 8,
        "lr": 1e-2,
        "warmup_steps": 10,
    },
)

TINY_TEXT = (
    "The fox ran to the river. The dog sat by the door.\n"
    "The hen found a seed and planted it, and the wheat grew tall.\n"
    "The quick brown fox jumped over the lazy dog by the old mill.\n"
) * 12


def fake_spec(**over: Any) -> RunSpec:
    return replace(FAKE_SPEC, **over)


def synthetic_losses(first: int, last: int, eval_every: int = 50) -> list[dict]:
    """TrainEvent dicts for steps first..last: a fixed, smooth loss curve with fixed timings."""
    events = []
    for step in range(first, last + 1):
        loss = 1.9 + 2.2 * math.exp(-step / 40)
        val = loss + 0.05 if step % eval_every == 0 else None
        events.append(
            {
                "step": step,
                "loss": round(loss, 4),
                "lr": 1e-2,
                "tokens_per_s": 12345.0,
                "elapsed": 0.25 * step,
                "val_loss": None if val is None else round(val, 4),
                "eval_train_loss": None if val is None else round(loss, 4),
            }
        )
    return events


@dataclass
class _Built:
    run: Any  # session.LoadedRun
    ready: Ready
    blob: bytes


_CACHE: dict[str, _Built] = {}


def build(spec: RunSpec, steps: int = TRAIN_STEPS) -> _Built:
    """Open a real run for `spec`, train it `steps` steps, and describe it as the worker would.

    Cached by (spec, steps): a session builds each model once. Deterministic: seeded, float32, CPU.
    """
    key = json.dumps([asdict(spec), steps], sort_keys=True)
    if key in _CACHE:
        return _CACHE[key]
    import torch

    from tui_gpt.engine.session import open_run
    from tui_gpt.link.snapshots import blob as weights_blob
    from tui_gpt.link.worker import describe_run

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        run = open_run(spec)
        tr = run.trainer
        # Train in float64, then round to float32: CPUs that sum in a different order (AVX2, AVX-512, ...)
        # then still end with the same float32 weights, so snapshots match across machines.
        tr.model.double()
        for state in tr.optimizer.state.values():  # a resumed run's moments: float32, from its checkpoint
            for name, value in state.items():
                if isinstance(value, torch.Tensor) and value.is_floating_point() and value.dim():
                    state[name] = value.double()
        for _ in tr.run(steps=steps):
            pass
        tr.model.float()
    finally:
        torch.set_num_threads(threads)
    tr.model.eval()
    # What the worker sends, with an empty history: the fake's curve arrives as Losses.
    ready = replace(describe_run(run), history={})
    built = _Built(run, ready, weights_blob(tr.model))
    _CACHE[key] = built
    return built


class FakeHold:
    """preempt.Hold without a process: counts how often the app stopped and continued the trainer."""

    def __init__(self) -> None:
        self.held = False
        self.stops = 0
        self.releases = 0

    def stop(self) -> None:
        if not self.held:
            self.held, self.stops = True, self.stops + 1

    def release(self) -> None:
        if self.held:
            self.held, self.releases = False, self.releases + 1


class FakeTrainer:
    """A client for `GPTApp(client_factory=...)` that trains nothing live and records its commands.

    On `start(spec)`: Loading, Ready (step = TRAIN_STEPS), a fixed Losses curve for steps
    1..TRAIN_STEPS, then Weights of the real trained model. Commands update a fake step counter
    and answer with Status, as the worker does; `save` writes a real checkpoint and answers Saved.
    The checkpoint holds the trained model (step `steps`); Saved reports the fake counter.
    `fail` makes `start` deliver only Failed(fail). Events are delivered synchronously, on the
    caller's thread (the UI thread for start/send, a worker thread for the app's stop on quit).
    """

    def __init__(
        self,
        callback: Callable[[Any], None],
        *,
        steps: int = TRAIN_STEPS,
        fail: str | None = None,
        save_fails: str | None = None,
    ) -> None:
        self.callback = callback
        self.steps = steps
        self.fail = fail
        self.save_fails = save_fails  # why every save fails, as the worker says it (a full disk, say)
        self.started = False
        self._alive = False
        self.built: _Built | None = None
        self.step = 0
        self.paused = False
        self.commands: list[Command] = []
        self.hold = FakeHold()
        self.starts: list[RunSpec] = []
        self.resets: list[RunSpec] = []
        self.stops: list[str | None] = []
        self.events: list[Any] = []  # everything delivered, in order

    # ---- the client interface ------------------------------------------------
    @property
    def alive(self) -> bool:
        return self._alive

    def start(self, spec: RunSpec) -> None:
        self.starts.append(spec)
        self.started = True
        if self.fail:
            self._alive = False
            self._emit(Failed(self.fail))
            return
        self._alive = True
        self._open(spec)

    def send(self, cmd: Command) -> None:
        self.commands.append(cmd)
        if not self._alive:
            return
        match cmd:
            case Pause():
                self.paused = True
            case Resume():
                self.paused = False
            case Step(n=n):
                self.advance(int(n))
            case Save(path=path):
                self._save(path)
            case Quit(save=save):
                self.stop(save)
                return
            case SetThreads():
                return  # advisory: the worker answers it with nothing
            case _:
                answer_lab(self, cmd)
        self._emit(Status(self.paused, self.step, self.spec()))

    def spec(self) -> RunSpec | None:
        """The settings in force, as the worker reports them: those of the run the lab commands act on."""
        held = getattr(self, "_lab", None)
        if held is not None and held[0] is self.built:
            return held[1].spec  # as the worker reports it: worker.in_force
        return self.built.ready.spec if self.built is not None else None

    def reset(self, spec: RunSpec) -> None:
        self.resets.append(spec)
        self.commands.append(Reset(spec))
        self._open(spec)

    def stop(self, save: str | None = None, timeout: float = 3.0) -> Saved | Failed | None:
        """As TrainerClient.stop: the Saved it wrote, if asked to save; a failed save keeps it running."""
        self.stops.append(save)
        if not self._alive:
            return None
        saved = self._save(save) if save else None
        if isinstance(saved, Failed):
            return saved
        self._alive = False
        self._emit(Stopped(self.step))
        return saved

    # ---- test controls ---------------------------------------------------------
    def advance(self, n: int = 1, weights: bool = True) -> None:
        """Pretend `n` more steps were taken: their (synthetic) losses, then the same weights."""
        first = self.step + 1
        self.step += n
        self._emit(Losses(synthetic_losses(first, self.step)))
        if weights and self.built is not None:
            self._emit(Weights(self.step, self.built.blob))

    def fail_now(self, message: str, fatal: bool = True) -> None:
        if fatal:
            self._alive = False
        self._emit(Failed(message, fatal=fatal))

    def kinds(self) -> list[type[Command]]:
        """The kind of each command sent, in order."""
        return [type(cmd) for cmd in self.commands]

    # ---- internals ---------------------------------------------------------------
    def _emit(self, ev: Any) -> None:
        self.events.append(ev)
        self.callback(ev)

    def _open(self, spec: RunSpec) -> None:
        self._emit(Loading("loading text", 0, 1))
        self.built = build(spec, self.steps)
        self.step = self.built.ready.step
        self._emit(self.built.ready)
        self._emit(Losses(synthetic_losses(1, self.step)))
        self._emit(Weights(self.step, self.built.blob))

    def _save(self, path: str) -> Saved | Failed:
        assert self.built is not None
        if self.save_fails:
            failed = Failed(f"could not save to {path}: {self.save_fails}", fatal=False, save_path=path)
            self._emit(failed)
            return failed
        out = self.built.run.save(Path(path))
        saved = Saved(str(out), self.step)
        self._emit(saved)
        return saved


def fake_factory(**kwargs: Any) -> Callable[[Callable[[Any], None]], FakeTrainer]:
    """A `client_factory` for GPTApp; the FakeTrainer is then `app.client`."""
    return lambda callback: FakeTrainer(callback, **kwargs)


def make_app(tmp_path: Path | str, spec: RunSpec | None = None, prompt: str = "The quick brown", **fake: Any):
    from tui_gpt.app.gpt_app import GPTApp

    out = str(Path(tmp_path) / "run")
    return GPTApp(spec or FAKE_SPEC, out=out, client_factory=fake_factory(**fake), prompt=prompt)


# ---- the lab's commands -------------------------------------------------------------------
# FakeTrainer answers them as worker.TrainerLoop.handle does, on its own deep copy of the run it built:
# the cached run is shared by every test of the session and must never change.


def lab_run(fake: FakeTrainer) -> LabCommands:
    """`fake`'s private copy of its run, with the worker's command handler; made on first use and after each reset."""
    import copy

    import torch

    held = getattr(fake, "_lab", None)
    if held is not None and held[0] is fake.built:
        return held[1]
    assert fake.built is not None
    run = copy.deepcopy(fake.built.run)
    # build() trained in float64 and rounded the model to float32, not the optimizer's moments:
    # round them too, as a float32 run would have them, or AdamW refuses the mixed dtypes.
    for state in run.trainer.optimizer.state.values():
        for key, value in state.items():
            if isinstance(value, torch.Tensor) and value.dtype == torch.float64:
                state[key] = value.float()
    handler = LabCommands(run)
    fake._lab = (fake.built, handler)  # type: ignore[attr-defined]
    return handler


def answer_lab(fake: FakeTrainer, cmd: Command) -> None:
    """The worker's own answer to a command on the run. With `fake.hold_lab` set, results wait in `fake.held`."""
    from tui_gpt.link.snapshots import blob as weights_blob

    handler = lab_run(fake)
    out = handler.handle(cmd)
    if isinstance(cmd, StepOn) and out:  # the worker then sends the new weights (at the fake's step count)
        out.append(Weights(fake.step, weights_blob(handler.run.trainer.model)))
    if getattr(fake, "hold_lab", False):
        fake.held = [*getattr(fake, "held", []), *out]  # type: ignore[attr-defined]
    else:
        for ev in out:
            fake._emit(ev)


def release_lab(fake: FakeTrainer) -> None:
    """Deliver the lab results held back by `fake.hold_lab`."""
    held, fake.held = getattr(fake, "held", []), []  # type: ignore[attr-defined]
    for ev in held:
        fake._emit(ev)
