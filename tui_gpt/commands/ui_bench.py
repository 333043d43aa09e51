"""`tui-gpt bench --ui`: the app's own numbers, measured on the real app and the real trainer.

1. Key -> repainted top-k: 200 keys typed at human speed into the headless app while the
   trainer process trains; the time from a key reaching the app to the top-k pane's render.
2. Trainer steps/s with the UI running, against the trainer alone at the same thread count.
3. Launch -> first paint: the real `tui-gpt` command in a pseudo-terminal, to its first frame.
"""

from __future__ import annotations

import argparse
import asyncio
import math
import os
import random
import select
import statistics
import struct
import sys
import tempfile
import time
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any
from unittest.mock import patch

from textual import events

from tui_gpt.commands.bench_spread import spread_lines, ui_bars
from tui_gpt.engine.session import check_spec
from tui_gpt.link.protocol import Losses
from tui_gpt.settings import RunSpec, cores

if TYPE_CHECKING:
    from rich.text import Text

    from tui_gpt.probes.nextword import NextWords

TYPED = (
    "The quick brown fox jumps over the lazy dog. Once upon a time there was a little mouse "
    "who lived in the forest. The next morning the wind blew and the crow said hello. "
)
KEY_GAP = (0.08, 0.16)  # seconds between keys: a quick human typist
SETTLE = 3.0  # seconds to let the trainer reach its pace before measuring
IDLE = 10.0  # seconds of training measured in the app before the first key


def _pct(xs: list[float], q: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, round(q * (len(xs) - 1)))]


def headless_steps_per_s(spec: RunSpec, seconds: float, threads: int) -> float:
    """The trainer process alone: steps per second once it has settled."""
    from tui_gpt.link.client import TrainerClient, prepare

    prepare()
    steps: list[tuple[float, int]] = []

    def on_event(ev: object) -> None:
        if isinstance(ev, Losses) and ev.events:
            steps.append((time.monotonic(), ev.events[-1]["step"]))

    client = TrainerClient(on_event, threads=threads)
    client.start(spec)
    try:
        deadline = time.monotonic() + 300
        while not steps and time.monotonic() < deadline:  # loading, the dtype trial and the first step
            time.sleep(0.05)
        time.sleep(SETTLE + seconds)
    finally:
        client.stop(save=None)
    return _rate(steps, steps[0][0] + SETTLE if steps else 0.0)


def _rate(samples: list[tuple[float, int]], since: float) -> float:
    window = [(t, s) for t, s in samples if t >= since]
    if len(window) < 2:
        return 0.0
    (t0, s0), (t1, s1) = window[0], window[-1]
    return (s1 - s0) / (t1 - t0) if t1 > t0 else 0.0


@dataclass
class TypingResults:
    """What typing into the app measured."""

    topk: list[float] = field(default_factory=list)  # seconds from each key to the repainted next tokens
    words: list[float] = field(default_factory=list)  # seconds from each key to its next words on screen
    idle: float = 0.0  # training steps/s in the app before the first key
    typing: float = 0.0  # training steps/s while the keys were typed
    keys_per_s: float = 0.0
    holds: int = 0  # times a key stopped the trainer
    ahead_hits: int = 0  # keys whose next words were worked out before the key came


class Typist:
    """Types keys into the real app, with the real trainer process training, and times their answers."""

    def __init__(self) -> None:
        self.renders: list[float] = []  # when the top-k pane rendered
        self.words: list[tuple[float, int]] = []  # (when, the probe generation the words answer)

    async def run(self, spec: RunSpec, n_keys: int, out: str) -> TypingResults:
        from tui_gpt.app.gpt_app import make_app
        from tui_gpt.app.prompt_probes import Probes
        from tui_gpt.app.widgets.topk import TopKBars

        original, show_words = TopKBars.render, Probes._show_words
        renders, words = self.renders, self.words

        def timed_render(bars: TopKBars) -> Text:
            result = original(bars)
            renders.append(time.perf_counter())
            return result

        def timed_words(probes: Probes, text: str, generation: int, found: NextWords, ghost: str, first: str) -> None:
            show_words(probes, text, generation, found, ghost, first)
            if generation == probes.generation:
                words.append((time.perf_counter(), generation))

        # Timed stand-ins for the top-k's render and the next words' display, put back however the run ends.
        with (
            patch.object(TopKBars, "render", timed_render),
            patch.object(Probes, "_show_words", timed_words),
        ):
            app = make_app(spec, out=out, prompt="")
            async with app.run_test(size=(160, 48)) as pilot:
                await self._ready(app)
                idle_start, idle_step = time.monotonic(), app.run_status.step
                await asyncio.sleep(IDLE)  # nobody types: the trainer has every core
                results = TypingResults(idle=(app.run_status.step - idle_step) / (time.monotonic() - idle_start))
                start, start_step, holds = time.monotonic(), app.run_status.step, app.client.hold.holds
                await self._type(app, n_keys, results)
                results.typing = (app.run_status.step - start_step) / (time.monotonic() - start)
                results.keys_per_s = n_keys / (time.monotonic() - start)
                results.holds = app.client.hold.holds - holds
                replica = app.state.replica
                assert replica is not None  # _ready waited for it
                results.ahead_hits = replica.ahead_hits
                await pilot.press("ctrl+q")
        return results

    @staticmethod
    async def _ready(app: Any) -> None:
        deadline = time.monotonic() + 300
        while app.state.replica is None and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        if app.state.replica is None:
            raise RuntimeError("the trainer did not become ready within 300 s")
        first = app.run_status.step  # the first step includes the dtype trial: a large model's takes a while
        while app.run_status.step == first and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        await asyncio.sleep(SETTLE)

    async def _type(self, app: Any, n_keys: int, results: TypingResults) -> None:
        """Type `n_keys` keys at a quick typist's pace, each once the last one's next words are in (or 2 s)."""
        rng = random.Random(0)
        for i in range(n_keys):
            if len(app.query_one("#prompt").value) > 60:
                key, char = "ctrl+u", None
            else:
                ch = TYPED[i % len(TYPED)]
                key, char = {" ": "space", ".": "full_stop"}.get(ch, ch), ch
            before = len(self.renders)
            t0 = time.perf_counter()
            app._driver.send_message(events.Key(key, char))
            while len(self.renders) == before and time.perf_counter() - t0 < 1.0:
                await asyncio.sleep(0.0005)
            if len(self.renders) > before:
                results.topk.append(self.renders[before] - t0)
            # The words for this key: the search of the newest probe (weight updates start one too).
            while time.perf_counter() - t0 < 2.0:
                shown = [t for t, g in self.words if g == app.probes.generation and t > t0]
                if shown:
                    results.words.append(shown[0] - t0)
                    break
                await asyncio.sleep(0.001)
            await asyncio.sleep(rng.uniform(*KEY_GAP))


def _read_until(fd: int, deadline: float, marker: bytes | None = None) -> bool:
    """Drain the terminal's output until `marker` shows (True), it closes, or the deadline passes."""
    seen = b""
    while time.monotonic() < deadline:
        if not select.select([fd], [], [], 0.05)[0]:
            continue
        try:
            chunk = os.read(fd, 1 << 16)
        except OSError:  # the child closed the terminal
            return False
        if not chunk:
            return False
        if marker is not None:
            seen = seen[-len(marker) :] + chunk
            if marker in seen:
                return True
    return False


def launch_to_paint(cwd: str, size: tuple[int, int] = (160, 48)) -> float:
    """Seconds from starting `tui-gpt` in a pseudo-terminal to its first frame on that terminal.

    The real command and the real terminal driver: the frame counts once a pane title is on
    the terminal. Then the app quits with ctrl+q, as a person would (it saves into `cwd`).
    """
    import fcntl  # POSIX terminals only, like the measurement itself
    import pty
    import termios

    t0 = time.monotonic()
    pid, fd = pty.fork()
    if pid == 0:  # the child: become `tui-gpt`
        try:
            os.chdir(cwd)
            os.execv(sys.executable, [sys.executable, "-m", "tui_gpt"])
        finally:
            os._exit(127)  # only if exec failed: never run the parent's code in the child
    try:
        fcntl.ioctl(fd, termios.TIOCSWINSZ, struct.pack("HHHH", size[1], size[0], 0, 0))
        painted = _read_until(fd, t0 + 30, b"Next word")
        seconds = time.monotonic() - t0
        _read_until(fd, time.monotonic() + 1.0)  # let it settle, as a person would
        os.write(fd, b"\x11")  # ctrl+q
        _read_until(fd, time.monotonic() + 10)
    finally:
        os.close(fd)
        os.waitpid(pid, 0)
    if not painted:
        raise RuntimeError("tui-gpt drew no frame within 30 s")
    return seconds


def first_paint(runs: int = 10) -> list[float]:
    with tempfile.TemporaryDirectory(prefix="tui-gpt-paint-") as cwd:
        return [launch_to_paint(cwd) for _ in range(runs)]


def _figure(what: str, seconds: list[float], keys: int, bar: str) -> str:
    """One figure's line: p50, p95 and max in ms, how many keys it covers, and its bar."""
    if not seconds:
        return f"{what}: none arrived within 2 s of their key"
    ms = [1000 * x for x in seconds]
    return (
        f"{what} ({len(ms)} of {keys} keys): p50 {statistics.median(ms):.1f} ms, p95 {_pct(ms, 0.95):.1f} ms, "
        f"max {max(ms):.1f} ms  (bar: {bar})"
    )


def _p95(seconds: list[float]) -> float:
    return 1000 * _pct(seconds, 0.95) if seconds else float("nan")


def bench_ui(args: argparse.Namespace) -> int:
    """`bench --ui`: one run of every figure, or `--runs N` of them back to back and their spread."""
    spec = RunSpec.from_args(argparse.Namespace(**{**vars(args), "text": args.text}), app=True)
    spec = replace(spec, train=replace(spec.train, decay_steps=10**9))  # keep the lr steady
    check_spec(spec)  # a device not here is one line, not a trainer process failing later
    from tui_gpt.link.client import prepare

    prepare()  # no room for the trainer link in /dev/shm is one line now, not 30 s of waiting for a paint
    n = getattr(args, "runs", 1) or 1
    runs = []
    for i in range(n):
        if n > 1:
            print(f"bench --ui: run {i + 1} of {n} (load average {os.getloadavg()[0]:.2f})", flush=True)
        runs.append(_one_run(args, spec, f" run={i + 1}" if n > 1 else ""))
    if n > 1:
        print("\n".join(spread_lines(runs, ui_bars(large=bool(spec.model), paint=not spec.model))))
    return 0


def _one_run(args: argparse.Namespace, spec: RunSpec, tag: str) -> dict[str, float]:
    """Measure every figure once, print them, and return them by the keys of `bench_spread.ui_bars`."""
    what = f"--model {spec.model}" if spec.model else "default model"
    bars = ("p95 <= 150", "p95 <= 400") if spec.model else ("p95 <= 33, max <= 100", "p95 <= 50")
    paints = []
    if not spec.model:  # the first paint is the plain `tui-gpt`'s
        print("bench --ui: launch -> first paint …", flush=True)
        paints = first_paint()
    print("bench --ui: the trainer alone, at 1 thread and at every core …", flush=True)
    seconds = 40.0 if spec.model else 12.0  # a fine-tuning step of GPT-2 takes seconds
    alone = {n: headless_steps_per_s(spec, seconds=seconds, threads=n) for n in sorted({1, cores()})}
    best = max(alone.values())
    print(f"bench --ui: typing {args.keys} keys into the app while it trains ({what}) …", flush=True)
    results = asyncio.run(Typist().run(spec, args.keys, tempfile.mkdtemp(prefix="tui-gpt-bench-")))
    lines = [
        _figure(f"key -> next tokens on screen, {what}", results.topk, args.keys, bars[0]),
        _figure(f"key -> next words on screen, {what}", results.words, args.keys, bars[1]),
        f"keys whose next words were worked out ahead, while the person paused: {results.ahead_hits} of {args.keys}",
    ]
    big_results = None
    if not spec.model:
        big = replace(spec, n_layer=6, n_head=6, n_embd=384)
        print(f"bench --ui: typing {args.keys // 2} keys with a 6-layer, 384-wide model …", flush=True)
        big_results = asyncio.run(Typist().run(big, args.keys // 2, tempfile.mkdtemp(prefix="tui-gpt-bench-")))
        lines += [
            _figure("key -> next tokens on screen, 6 layers x 384", big_results.topk, args.keys // 2, "p95 <= 33"),
            _figure("key -> next words on screen, 6 layers x 384", big_results.words, args.keys // 2, "p95 <= 50"),
        ]
    idle, typing = (results.idle / best if best else 0.0), (results.typing / best if best else 0.0)
    lines += [
        "trainer steps/s headless: "
        + ", ".join(f"{v:.2f} at {n} thread{'s' if n > 1 else ''}" for n, v in alone.items()),
        f"training in the app, nobody typing: {results.idle:.2f} steps/s = {100 * idle:.0f}% of the best headless"
        "  (bar: >= 85%)",
        f"training in the app while typing {results.keys_per_s:.1f} keys/s: {results.typing:.2f} steps/s = "
        f"{100 * typing:.0f}% of the best headless; the trainer was stopped for {results.holds} keys  (bar: >= 50%)",
    ]
    if paints:
        lines.append(
            f"launch -> first paint: median {statistics.median(paints):.3f} s, p90 {_pct(paints, 0.9):.3f} s, "
            f"max {max(paints):.3f} s over {len(paints)} launches  (bar: <= 0.4 s)"
        )
    figures = {
        "topk_p95_ms": _p95(results.topk),
        "topk_max_ms": 1000 * max(results.topk) if results.topk else math.nan,
        "words_p95_ms": _p95(results.words),
        "idle_ratio": idle,
        "typing_ratio": typing,
    }
    if big_results is not None:
        figures |= {"big_topk_p95_ms": _p95(big_results.topk), "big_words_p95_ms": _p95(big_results.words)}
    if paints:
        figures["first_paint_s"] = statistics.median(paints)
    lines.append(f"load average {os.getloadavg()[0]:.2f} after this run")
    print("\n".join(lines))
    print(f"bench-ui:{tag} keys={len(results.topk)} " + " ".join(f"{k}={_number(k, v)}" for k, v in figures.items()))
    return figures


def _number(key: str, value: float) -> str:
    return f"{value:.3f}" if key.endswith(("_s", "_ratio")) else f"{value:.1f}"
