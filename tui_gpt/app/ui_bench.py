"""`tui-gpt bench --ui`: the app's own numbers, measured on the real app and the real trainer.

1. Key -> repainted top-k: 200 keys typed at human speed into the headless app while the
   trainer process trains; the time from a key reaching the app to the top-k pane's render.
2. Trainer steps/s with the UI running, against the trainer alone at the same thread count.
3. Launch -> first paint: the real `tui-gpt` command in a pseudo-terminal, to its first frame.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import select
import statistics
import struct
import sys
import tempfile
import time
from dataclasses import replace

from textual import events

from tui_gpt.client import cores
from tui_gpt.protocol import Losses, Ready
from tui_gpt.settings import RunSpec

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
    from tui_gpt.client import TrainerClient, prepare

    prepare()
    steps: list[tuple[float, int]] = []
    ready = []

    def on_event(ev: object) -> None:
        if isinstance(ev, Ready):
            ready.append(time.monotonic())
        elif isinstance(ev, Losses) and ev.events:
            steps.append((time.monotonic(), ev.events[-1]["step"]))

    client = TrainerClient(on_event, threads=threads)
    client.start(spec)
    try:
        deadline = time.monotonic() + 120
        while not ready and time.monotonic() < deadline:
            time.sleep(0.05)
        time.sleep(SETTLE + seconds)
    finally:
        client.stop(save=None)
    return _rate(steps, ready[0] + SETTLE if ready else 0.0)


def _rate(samples: list[tuple[float, int]], since: float) -> float:
    window = [(t, s) for t, s in samples if t >= since]
    if len(window) < 2:
        return 0.0
    (t0, s0), (t1, s1) = window[0], window[-1]
    return (s1 - s0) / (t1 - t0) if t1 > t0 else 0.0


async def _type_keys(spec: RunSpec, n_keys: int, out: str) -> tuple[list[float], list[float], float, float]:
    """Latencies of key -> repainted next tokens and key -> next words; training steps/s idle, and while typing."""
    from tui_gpt.app.app import GPTApp
    from tui_gpt.app.probes import Probes
    from tui_gpt.app.widgets.topk import TopKBars

    renders: list[float] = []
    words: list[tuple[float, int]] = []  # (when, the probe generation the words answer)
    original, show_words = TopKBars.render, Probes._show_words

    def timed_render(self: TopKBars):
        result = original(self)
        renders.append(time.perf_counter())
        return result

    def timed_words(self: Probes, text: str, generation: int, *rest: object) -> None:
        show_words(self, text, generation, *rest)
        if generation == self.generation:
            words.append((time.perf_counter(), generation))

    TopKBars.render = timed_render  # type: ignore[method-assign]
    Probes._show_words = timed_words  # type: ignore[method-assign]
    steps: list[tuple[float, int]] = []
    app = GPTApp(spec, out=out, prompt="")
    latencies: list[float] = []
    word_latencies: list[float] = []
    rng = random.Random(0)
    try:
        async with app.run_test(size=(160, 48)) as pilot:
            deadline = time.monotonic() + 120
            while app.lens is None and time.monotonic() < deadline:
                await asyncio.sleep(0.05)
            if app.lens is None:
                raise RuntimeError("the trainer did not become ready within 120 s")
            await asyncio.sleep(SETTLE)
            idle_start, idle_step = time.monotonic(), app.step
            await asyncio.sleep(IDLE)  # nobody types: the trainer has every core
            idle = (app.step - idle_step) / (time.monotonic() - idle_start)
            start = time.monotonic()
            steps.append((start, app.step))
            driver = app._driver
            for i in range(n_keys):
                if len(app.query_one("#prompt").value) > 60:
                    key, char = "ctrl+u", None
                else:
                    ch = TYPED[i % len(TYPED)]
                    key, char = ("space" if ch == " " else ch), ch
                    if ch == ".":
                        key = "full_stop"
                before = len(renders)
                t0 = time.perf_counter()
                driver.send_message(events.Key(key, char))
                while len(renders) == before and time.perf_counter() - t0 < 1.0:
                    await asyncio.sleep(0.0005)
                if len(renders) > before:
                    latencies.append(renders[before] - t0)
                # The words for this key: the search of the newest probe (weight updates start one too).
                while time.perf_counter() - t0 < 2.0:
                    shown = [t for t, g in words if g == app.probes.generation and t > t0]
                    if shown:
                        word_latencies.append(shown[0] - t0)
                        break
                    await asyncio.sleep(0.001)
                await asyncio.sleep(rng.uniform(*KEY_GAP))
                steps.append((time.monotonic(), app.step))
            await pilot.press("ctrl+q")
    finally:
        TopKBars.render = original  # type: ignore[method-assign]
        Probes._show_words = show_words  # type: ignore[method-assign]
    return latencies, word_latencies, idle, _rate(steps, 0.0)


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


def _print_words(what: str, latencies: list[float], keys: int) -> None:
    ms = [1000 * x for x in latencies]
    if not ms:
        print(f"key -> next words on screen, {what}: none arrived within 2 s of their key")
        return
    print(
        f"key -> next words on screen, {what} ({len(ms)} of {keys} keys within 2 s): "
        f"p50 {statistics.median(ms):.1f} ms, p95 {_pct(ms, 0.95):.1f} ms, max {max(ms):.1f} ms"
        "  (target p95 <= 50 for the default model)"
    )


def bench_ui(args: argparse.Namespace) -> int:
    spec = RunSpec.from_args(argparse.Namespace(**{**vars(args), "text": args.text}))
    spec = replace(spec, train=replace(spec.train, decay_steps=10**9))  # keep the lr steady
    out = tempfile.mkdtemp(prefix="tui-gpt-bench-")
    print("bench --ui: launch -> first paint …", flush=True)
    paints = first_paint()
    print("bench --ui: the trainer alone, at 1 thread and at every core …", flush=True)
    alone = {n: headless_steps_per_s(spec, seconds=12.0, threads=n) for n in sorted({1, cores()})}
    best_threads = max(alone, key=alone.__getitem__)
    print(f"bench --ui: typing {args.keys} keys into the app while it trains …", flush=True)
    latencies, word_latencies, idle, with_ui = asyncio.run(_type_keys(spec, args.keys, out))
    ms = [1000 * x for x in latencies]
    print(
        f"key -> repainted next tokens ({len(ms)} keys): p50 {statistics.median(ms):.1f} ms, "
        f"p95 {_pct(ms, 0.95):.1f} ms, max {max(ms):.1f} ms  (target p95 <= 33, max <= 100)"
    )
    _print_words("default model", word_latencies, args.keys)
    big = replace(spec, n_layer=6, n_head=6, n_embd=384)
    print(f"bench --ui: typing {args.keys // 2} keys with a 6-layer, 384-wide model …", flush=True)
    _, big_words, _, _ = asyncio.run(_type_keys(big, args.keys // 2, tempfile.mkdtemp(prefix="tui-gpt-bench-")))
    _print_words("6 layers x 384", big_words, args.keys // 2)
    best = alone[best_threads]
    ratio = idle / best if best else 0.0
    print(
        "trainer steps/s headless: "
        + ", ".join(f"{v:.1f} at {n} thread{'s' if n > 1 else ''}" for n, v in alone.items())
        + f"; in the app with no key pressed {idle:.1f} = {100 * ratio:.0f}% of the best  (target >= 85%)"
        + f"; while typing {with_ui:.1f}"
    )
    print(
        f"launch -> first paint: median {statistics.median(paints):.3f} s, p90 {_pct(paints, 0.9):.3f} s, "
        f"max {max(paints):.3f} s over {len(paints)} launches  (target <= 0.4 s)"
    )
    words_p95 = _pct([1000 * x for x in word_latencies], 0.95) if word_latencies else 0.0
    print(
        f"bench-ui: keys={len(ms)} p50_ms={statistics.median(ms):.1f} p95_ms={_pct(ms, 0.95):.1f} "
        f"max_ms={max(ms):.1f} words_p95_ms={words_p95:.1f} "
        f"steps_ratio={ratio:.2f} first_paint_s={statistics.median(paints):.3f}"
    )
    return 0
