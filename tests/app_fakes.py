"""Fakes and helpers for the app tests: a deterministic in-process trainer and pilot utilities.

`FakeTrainer` implements the client interface that `GPTApp` expects from `TrainerClient`
(`start`, `send`, `reset`, `stop`, `alive`), but instead of a process it builds a real, seeded
tiny model in this process, trains it a fixed number of steps once (cached for the session) and
delivers `Ready`, a fixed synthetic `Losses` curve and `Weights` through the callback,
synchronously. Nothing races with the UI: every event is delivered from the call that causes it.
"""

from __future__ import annotations

import asyncio
import functools
import inspect
import json
import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

from tui_gpt.protocol import Failed, Loading, Losses, Ready, Saved, Status, Stopped, Weights
from tui_gpt.session import RunSpec

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
    run: Any  # session.Run
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

    from tui_gpt.session import open_run
    from tui_gpt.worker import describe_run, weights_blob

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        run = open_run(spec)
        tr = run.trainer
        # Train in float64, then round to float32: CPUs that sum in a different order (AVX2, AVX-512, ...)
        # then still end with the same float32 weights, so snapshots match across machines.
        tr.model.double()
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
    ) -> None:
        self.callback = callback
        self.steps = steps
        self.fail = fail
        self.started = False
        self._alive = False
        self.built: _Built | None = None
        self.step = 0
        self.paused = False
        self.commands: list[tuple[str, dict]] = []
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

    def send(self, name: str, **args: Any) -> None:
        self.commands.append((name, args))
        if not self._alive:
            return
        if name == "pause":
            self.paused = True
        elif name == "resume":
            self.paused = False
        elif name == "step":
            self.advance(int(args.get("n", 1)))
        elif name == "save":
            self._save(args["path"])
        elif name == "quit":
            self.stop(args.get("save"))
            return
        elif name in LAB_COMMANDS:
            answer_lab(self, name, args)
        self._emit(Status(self.paused, self.step))

    def reset(self, spec: RunSpec) -> None:
        self.resets.append(spec)
        self.commands.append(("reset", {"spec": asdict(spec)}))
        self._open(spec)

    def stop(self, save: str | None = None, timeout: float = 3.0) -> None:
        self.stops.append(save)
        if not self._alive:
            return
        if save:
            self._save(save)
        self._alive = False
        self._emit(Stopped(self.step))

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

    def names(self) -> list[str]:
        return [name for name, _ in self.commands]

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

    def _save(self, path: str) -> None:
        assert self.built is not None
        out = self.built.run.save(Path(path))
        self._emit(Saved(str(out), self.step))


def fake_factory(**kwargs: Any) -> Callable[[Callable[[Any], None]], FakeTrainer]:
    """A `client_factory` for GPTApp; the FakeTrainer is then `app.client`."""
    return lambda callback: FakeTrainer(callback, **kwargs)


def make_app(tmp_path: Path | str, spec: RunSpec | None = None, prompt: str = "The quick brown", **fake: Any):
    from tui_gpt.app.app import GPTApp

    out = str(Path(tmp_path) / "run")
    return GPTApp(spec or FAKE_SPEC, out=out, client_factory=fake_factory(**fake), prompt=prompt)


def running(app: Any, size: tuple[int, int] = (160, 48)) -> Any:
    """`app.run_test(size=size)`."""
    return app.run_test(size=size)


# ---- pilot helpers ----------------------------------------------------------------


def sync(fn: Callable) -> Callable:
    """Run an async test function with asyncio.run, so no async pytest plugin is needed."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        return asyncio.run(fn(*args, **kwargs))

    wrapper.__signature__ = inspect.signature(fn)  # type: ignore[attr-defined]
    return wrapper


async def wait_for(pilot: Any, cond: Callable[[], Any], timeout: float = 10.0, what: str = "condition") -> Any:
    """Let the app run until `cond()` is truthy; fail with `what` after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    app = pilot.app
    while True:
        crashed = getattr(app, "_exception", None)
        if crashed is not None:
            raise AssertionError(f"the app crashed while waiting for {what}: {crashed!r}") from crashed
        value = cond()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")
        await pilot.pause(0.02)


async def settle(pilot: Any) -> None:
    """Process pending messages and the callbacks scheduled after the next refresh."""
    for _ in range(3):
        await pilot.pause()
    await pilot.wait_for_scheduled_animations()
    await pilot.pause()


async def wait_ready(pilot: Any, step: int | None = TRAIN_STEPS, ghost: bool = True, timeout: float = 30.0) -> None:
    """Wait until the model is built, its trained weights are in, and (optionally) the ghost text is shown."""
    from tui_gpt.app.widgets.prompt import PromptInput
    from tui_gpt.app.widgets.topk import TopKBars

    app = pilot.app
    await wait_for(pilot, lambda: app.lens is not None, timeout, "the model (app.lens)")
    if step is not None:
        await wait_for(
            pilot, lambda: app.lens is not None and app.lens.step == step, timeout, f"weights of step {step}"
        )
    await wait_for(pilot, lambda: app.query_one(TopKBars).guesses, timeout, "top-k guesses")
    if ghost:
        await wait_for(pilot, lambda: app.query_one(PromptInput).ghost, timeout, "ghost text")
    await settle(pilot)


def text_of(widget: Any) -> str:
    """The plain text a one-line info widget shows, markup removed (Static, InfoLine or any render())."""
    from rich.text import Text
    from textual.content import Content

    for attr in ("text", "content"):  # InfoLine.text, Static.content: the markup as set
        value = getattr(widget, attr, None)
        if isinstance(value, str):
            return Content.from_markup(value).plain
        if isinstance(value, Content | Text):
            return value.plain
    rendered = widget.render()
    if isinstance(rendered, Content | Text):
        return rendered.plain
    return Content.from_markup(rendered).plain if isinstance(rendered, str) else str(rendered)


def screen_text(app: Any) -> str:
    """The characters on screen now, as plain text (what a user would read)."""
    import io

    from rich.console import Console

    width, height = app.size
    console = Console(
        width=width,
        height=height,
        file=io.StringIO(),
        force_terminal=True,
        color_system="truecolor",
        record=True,
        legacy_windows=False,
        safe_box=False,
    )
    console.print(app.screen._compositor.render_update(full=True, screen_stack=app._background_screens))
    return console.export_text()


# ---- the lab's commands -------------------------------------------------------------------
# FakeTrainer answers them as worker.TrainerLoop.handle does, on its own deep copy of the run it built:
# the cached run is shared by every test of the session and must never change.

LAB_COMMANDS = frozenset({"set_causal", "set_lr", "set_eval_interval", "step_on", "token_counts", "memorization"})


def lab_run(fake: FakeTrainer) -> Any:
    """`fake`'s private copy of its run (session.Run), made on its first lab command and after each reset."""
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
    fake._lab = (fake.built, run)  # type: ignore[attr-defined]
    return run


def answer_lab(fake: FakeTrainer, name: str, args: dict) -> None:
    """The worker's answer to one lab command. With `fake.hold_lab` set, results wait in `fake.held`."""
    from tui_gpt.lab import NgramIndex, token_counts
    from tui_gpt.protocol import Memorized, TokenCounts
    from tui_gpt.worker import _sample_texts

    run = lab_run(fake)
    tr = run.trainer
    out: list[Any] = []
    if name == "set_lr":
        tr.set_lr(float(args["lr"]))
    elif name == "set_eval_interval":
        tr.config.eval_interval = int(args["interval"])
    elif name == "set_causal":
        tr.set_causal(bool(args["causal"]))
    elif name == "step_on":
        out = _step_on(fake, run, list(args["ids"]))
    elif name == "token_counts":
        text = args["text"]
        out = [TokenCounts(text, token_counts(text, _sample_texts(run.corpus.texts)))]
    elif name == "memorization":
        n = int(args["min_len"])
        ids = list(args["ids"])
        out = [Memorized(ids, NgramIndex(run.data.train, n).spans(ids), n)]
    if getattr(fake, "hold_lab", False):
        fake.held = [*getattr(fake, "held", []), *out]  # type: ignore[attr-defined]
    else:
        for ev in out:
            fake._emit(ev)


def _step_on(fake: FakeTrainer, run: Any, ids: list[int]) -> list[Any]:
    """worker.TrainerLoop.step_on: ExampleStepped, then the new weights (at the fake's step count)."""
    from tui_gpt.worker import step_on_example, weights_blob

    result = step_on_example(run, ids)
    if result is None:
        return []
    return [result, Weights(fake.step, weights_blob(run.trainer.model))]


def release_lab(fake: FakeTrainer) -> None:
    """Deliver the lab results held back by `fake.hold_lab`."""
    held, fake.held = getattr(fake, "held", []), []  # type: ignore[attr-defined]
    for ev in held:
        fake._emit(ev)


def chart_drawn(app: Any) -> bool:
    """The loss chart is mounted and shows the whole curve."""
    pane = app.query_one("#training")
    return pane.chart is not None and not pane.curve.dirty


async def steady(pilot: Any, hints: bool = False) -> None:
    """For snapshots: the model is in, the panes are drawn, no worker runs, the cursor does not blink."""
    from tui_gpt.app.widgets.prompt import PromptInput

    app = pilot.app
    app.query_one(PromptInput).cursor_blink = False
    await wait_ready(pilot)
    await wait_for(pilot, lambda: "tok/s" in text_of(app.query_one("#train-stats")), what="the stats line")
    await wait_for(pilot, lambda: chart_drawn(app), what="the loss chart")
    if hints:
        await wait_for(pilot, lambda: text_of(app.query_one("#hints")), what="the hints")
    await app.workers.wait_for_complete()  # the ghost text and the greedy line come from thread workers
    await settle(pilot)
