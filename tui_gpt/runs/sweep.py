"""`tui-gpt sweep`: a grid of settings times seeds, each run a `tui-gpt train` process, compared in one table.

A process per run keeps Ctrl+C, threads and torch's state clean. Runs go one at a time with every
core, or several at once with the cores split: the sweep times both on its own first runs and keeps
the faster (`Plan`). Every run is recorded (kind "sweep", with the sweep's name), so the same command
again skips the runs already done, and the app can overlay them.
"""

from __future__ import annotations

import argparse
import hashlib
import itertools
import json
import math
import re
import signal
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table
from rich.text import Text

from tui_gpt import lifeline
from tui_gpt.engine.savedir import checkpoint_around
from tui_gpt.errors import TuiGptError
from tui_gpt.runs.recorder import settings_of
from tui_gpt.runs.registry import Registry, RunRecord, run_key, show_value
from tui_gpt.settings import DEFAULT_STEPS, OPTIONS, STEPS, SWEEP_MAX_RUNS, RunSpec, TrainConfig, cores
from tui_gpt.visible import shown

POLL_SECONDS = 0.25
SEED = next(opt for opt in OPTIONS if opt.field == "seed")


@dataclass
class Point:
    """One run of the grid: its train options, and how the table and folders name it."""

    index: int
    options: list[tuple[str, object]]  # (flag, value); value None for a switch (--no-causal)
    setting: str  # what varies but the seed: "lr 1e-3", or "" when only seeds vary
    seed: object
    steps: int | None
    key: str = ""  # runs.run_key of its settings and text

    @property
    def label(self) -> str:
        return " ".join(p for p in (self.setting, f"seed {self.seed}" if self.seed is not None else "") if p) or "run"

    @property
    def folder(self) -> str:
        """Its checkpoint's folder in the sweep's: named for its settings and text too (its key), so that
        another sweep into the same --out, with other settings, never writes over this one's."""
        name = f"{self.index + 1:02d}-" + re.sub(r"[^A-Za-z0-9.+-]+", "-", self.label)
        return f"{name}-{self.key[:8]}" if self.key else name

    def train_args(self) -> list[str]:
        args: list[str] = []
        for flag, value in self.options:
            args += [flag] if value is None else [flag, str(value)]
        return args


def _seeds(args: argparse.Namespace) -> list | None:
    """The seeds axis: --seed's list, or --seeds N counting up from --seed."""
    if args.seeds == 1:
        return args.seed
    if args.seed and len(args.seed) > 1:
        raise TuiGptError("give --seed one value with --seeds N, or a list of seeds without it")
    base = args.seed[0] if args.seed else TrainConfig().seed
    return [base + i for i in range(args.seeds)]


def _check_size(args: argparse.Namespace) -> None:
    """Refuse a grid of more than --max-runs runs, counted before any is listed (--seeds 10**12 lists nothing)."""
    sizes = [len(values) for opt in OPTIONS if opt is not SEED and not opt.flag_only
             if (values := getattr(args, opt.dest, None))]  # fmt: skip
    sizes += [len(getattr(args, STEPS.dest, None) or [0])]
    sizes.append(args.seeds if args.seeds > 1 else len(args.seed or [0]))
    total = math.prod(sizes)
    limit = getattr(args, "max_runs", SWEEP_MAX_RUNS)
    if total > limit:
        axes = " x ".join(f"{n:,}" for n in sizes if n > 1)
        raise TuiGptError(f"this grid is {total:,} runs ({axes}), more than --max-runs {limit:,}; "
                          f"to train them all, give --max-runs {total}")  # fmt: skip


def grid(args: argparse.Namespace) -> list[Point]:
    """Every combination of the options given as lists, seeds innermost (a setting's seeds are neighbours)."""
    _check_size(args)
    fixed: list[tuple[str, object]] = []
    axes: list[tuple[str, list]] = []
    for opt in (*OPTIONS, STEPS):
        values = _seeds(args) if opt is SEED else getattr(args, opt.dest, None)
        if opt.flag_only:
            fixed += [(opt.flag, None)] if values else []
        elif values and (len(values) > 1 or opt is SEED):
            axes.append((opt.flag, list(values)))
        elif values:
            fixed.append((opt.flag, values[0]))
    if any(v <= 0 for v in getattr(args, STEPS.dest, None) or []):
        raise TuiGptError("--steps must be positive")
    axes.sort(key=lambda axis: axis[0] == SEED.flag)
    points = []
    for i, combo in enumerate(itertools.product(*(values for _, values in axes))):
        chosen = list(zip((flag for flag, _ in axes), combo, strict=True))
        setting = " ".join(f"{flag.removeprefix('--')} {show_value(v)}" for flag, v in chosen if flag != SEED.flag)
        seed = next((v for flag, v in chosen if flag == SEED.flag), None)
        options = fixed + chosen
        steps = next((int(v) for flag, v in options if flag == STEPS.flag), None)  # type: ignore[call-overload]
        points.append(Point(i, options, setting, seed, steps))
    return points


def key_of(point: Point, sources: list[str], digest: str) -> str:
    """The registry key the run will have: its spec built from its options as `train`'s parser hands them over."""
    by_flag = {opt.flag: opt for opt in (*OPTIONS, STEPS)}
    values = {by_flag[flag].dest: True if value is None else value for flag, value in point.options}
    spec = RunSpec.from_args(argparse.Namespace(text=sources, given=set(values), **values))
    return run_key(settings_of(spec), digest)


def default_name(sources: list[str], points: list[Point]) -> str:
    text = "-".join(Path(s).name for s in sources) or "fables"
    blob = json.dumps([sources, [p.train_args() for p in points]])
    return re.sub(r"[^A-Za-z0-9.+-]+", "-", text)[:40] + "-" + hashlib.sha256(blob.encode()).hexdigest()[:6]


@dataclass
class Child:
    """A run in progress: its `tui-gpt train` process."""

    point: Point
    proc: subprocess.Popen
    log: Path
    threads: int
    began: float = field(default_factory=time.monotonic)
    done_steps: float = 0.0  # its last recorded evaluation's step


def _threads(n: int) -> str:
    return f"{n} thread{'s' * (n != 1)}"


class Plan:
    """How many runs at once: one alone with every core, then `split` at once with the cores shared; the faster wins."""

    def __init__(self, cores: int, runs: int, jobs: int | None) -> None:
        self.cores = cores
        self.split = min(cores, runs - 1)
        self.width = 1
        self.phase = "decided"
        self.started = 0  # runs started in this phase
        self.rates: dict[str, float] = {}  # steps/s of "alone" and "split"
        self.ended: list[tuple[float, float, float]] = []  # (began, ended, steps) of this phase's runs
        if jobs:
            self.width = min(jobs, cores)
            self.note = f"{self.width} at once with {_threads(self.threads)} each (--jobs)"
        elif cores < 2 or runs < 3:
            why = "one core" if cores < 2 else "too few runs to time both ways"
            self.note = f"one at a time with {_threads(cores)} ({why})"
        else:
            self.phase = "alone"
            self.note = f"timing one run alone with {_threads(cores)}, then {self.split} at once"

    @property
    def threads(self) -> int:
        return max(1, self.cores // self.width)

    def room(self, running: int) -> int:
        """How many runs to start now."""
        if self.phase == "decided":
            return max(0, self.width - running)
        want = 1 if self.phase == "alone" else self.split
        return want - self.started

    def launched(self) -> None:
        self.started += 1

    def finished(self, child: Child, steps: float, ok: bool) -> None:
        """A run ended: in a timing phase, note how fast; once the phase's runs are all in, move on."""
        if self.phase == "decided":
            return
        if not ok:  # a failed run times nothing: decide on what is known
            self._decide()
            return
        self.ended.append((child.began, time.monotonic(), steps))
        want = 1 if self.phase == "alone" else self.split
        if len(self.ended) < want:
            return
        began, ended = min(e[0] for e in self.ended), max(e[1] for e in self.ended)
        self.rates[self.phase] = sum(e[2] for e in self.ended) / max(ended - began, 1e-9)
        if self.phase == "alone":
            self.phase, self.width, self.started, self.ended = "split", self.split, 0, []
        else:
            self._decide()

    def _decide(self) -> None:
        alone, split = self.rates.get("alone"), self.rates.get("split")
        self.phase, self.width = "decided", self.split if alone and split and split > alone else 1
        if alone and split:
            each = self.cores // self.split
            self.note = (f"{self.split} at once with {_threads(each)} each" if self.width > 1 else "one at a time") + (
                f": timed on the first runs, {split:.1f} steps/s {self.split} at once ({_threads(each)} each) "
                f"against {alone:.1f} one at a time ({_threads(self.cores)})"
            )
        else:
            self.note = f"one at a time with {_threads(self.cores)} (a timing run did not finish)"


class Sweep:
    """Runs the points not yet done, a `Plan`'s width at a time, and stops them all on a signal."""

    def __init__(self, args: argparse.Namespace, points: list[Point], name: str, out: Path, digest: str) -> None:
        self.args, self.points, self.name, self.out, self.digest = args, points, name, out, digest
        self.console = Console(stderr=True)
        self.running: list[Child] = []
        self.failed: list[Point] = []
        self.stop: int | None = None  # the first signal received
        self.began = time.time()

    def command(self, point: Point, threads: int) -> list[str]:
        a = self.args
        cmd = [sys.executable, "-m", "tui_gpt", "train", *point.train_args(), "--out", str(self.out / point.folder)]
        cmd += ["--sweep", self.name, "--threads", str(threads)]
        cmd += ["--time", str(a.time)] if a.time else []
        cmd += ["--log", ",".join(a.log), "--log-dir", a.log_dir] if a.log else []
        return cmd + (["--", *a.text] if a.text else [])

    def launch(self, point: Point, threads: int) -> None:
        log = self.out / "logs" / f"{point.folder}.log"
        log.parent.mkdir(parents=True, exist_ok=True)
        with log.open("w") as f:
            # Its own session: a Ctrl+C reaches the sweep alone, which passes one SIGINT on to each run.
            # child_env: a sweep killed outright (SIGKILL) still ends its runs, each saving (lifeline.py).
            proc = subprocess.Popen(
                self.command(point, threads),
                stdin=subprocess.DEVNULL,
                stdout=f,
                stderr=f,
                start_new_session=True,
                env=lifeline.child_env(),
            )
        self.running.append(Child(point, proc, log, threads))

    def _signal(self, signum: int, frame: object) -> None:
        self.stop = self.stop or signum
        for child in self.running:  # a first signal saves and stops each run; a second stops it at once
            if child.proc.poll() is None:
                child.proc.send_signal(signal.SIGINT)

    def records(self, registry: Registry) -> dict[int, RunRecord]:
        """This sweep's runs in the registry that started since it did, by process id."""
        return {r.pid: r for r in registry.runs(text_digest=self.digest)
                if r.pid and r.started >= self.began - 1 and r.info.sweep == self.name}  # fmt: skip

    def run(self, todo: list[Point], plan: Plan) -> None:
        handlers = {sig: signal.signal(sig, self._signal) for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)}
        try:
            with Registry() as registry, _progress(self.console) as bar:
                task = bar.add_task("sweep", total=len(todo), stats="")
                pending = list(todo)
                done = 0
                while (pending and self.stop is None) or self.running:
                    for _ in range(min(plan.room(len(self.running)), len(pending)) if self.stop is None else 0):
                        self.launch(pending.pop(0), plan.threads)
                        plan.launched()
                    time.sleep(POLL_SECONDS)
                    done += self.reap(registry, plan, bar)
                    partial = sum(c.done_steps / (c.point.steps or DEFAULT_STEPS) for c in self.running)
                    stats = f"{len(self.running)} running" + (" · stopping" if self.stop else "")
                    bar.update(task, completed=done + min(partial, len(self.running)), stats=stats)
        finally:
            for sig, old in handlers.items():
                signal.signal(sig, old)

    def reap(self, registry: Registry, plan: Plan, bar: Progress) -> int:
        """Note each run's progress; take in the runs that ended. How many ended."""
        records = self.records(registry)
        ended = 0
        for child in list(self.running):
            record = records.get(child.proc.pid)
            if record and record.final:
                child.done_steps = record.final.step
            code = child.proc.poll()
            if code is None:
                continue
            self.running.remove(child)
            ended += 1
            steps = record.end.step if record and record.end else child.done_steps
            plan.finished(child, steps, code == 0)
            if code != 0 and not (self.stop and code >= 128):
                self.failed.append(child.point)
                bar.console.print(f"{shown(child.point.label)}: failed (exit {code}): {_last_line(child.log)}",
                                  markup=False)  # fmt: skip
        return ended


def _progress(console: Console) -> Progress:
    return Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("runs {task.fields[stats]}"),
        TimeElapsedColumn(),
        console=console,
    )


def _last_line(log: Path) -> str:
    try:
        lines = [line for line in log.read_text(errors="replace").splitlines() if line.strip()]
    except OSError:
        return "no log"
    return shown(lines[-1].strip()) if lines else "no output"  # a run's output: its text may hold escapes


def _mean_std(values: list[float]) -> str:
    if not values:
        return ""
    mean = statistics.fmean(values)
    return f"{mean:.4f} ± {statistics.stdev(values):.4f}" if len(values) > 1 else f"{mean:.4f}"


def summary(points: list[Point], done: dict[str, RunRecord]) -> Table:
    """Per setting: the seeds done, and mean ± std (over seeds) of the final val loss and val bits per byte."""
    t = Table(title="final val loss and bits per byte, mean ± std over seeds")
    for name in ("setting", "seeds", "val loss", "val bpb", "tok/s", "runs"):
        t.add_column(name, justify="left" if name in ("setting", "runs") else "right")
    for setting, group in itertools.groupby(points, key=lambda p: p.setting):
        members = list(group)
        runs = [done[p.key] for p in members if p.key in done]
        finals = [r.final for r in runs if r.final]
        rates = [r.end.tokens_per_s for r in runs if r.end]
        t.add_row(
            Text(shown(setting or "all")),
            f"{len(runs)}/{len(members)}",
            _mean_std([f.val for f in finals]),
            _mean_std([f.val_bpb for f in finals if f.val_bpb is not None]),
            f"{statistics.fmean(rates):,.0f}" if rates else "",
            ", ".join(str(r.id) for r in runs),
        )
    return t


def done_runs(points: list[Point], digest: str) -> dict[str, RunRecord]:
    """The newest run done for each point's key, whatever recorded it."""
    keys = {p.key for p in points}
    with Registry() as registry:
        found: dict[str, RunRecord] = {}
        for r in registry.runs(text_digest=digest):  # newest first
            if r.status == "done" and r.key in keys:
                found.setdefault(r.key, r)
    return found


def sweep(args: argparse.Namespace) -> int:
    """Run the grid, print the table, and exit 0; 1 when a run failed; 128 + the signal that stopped it."""
    from tui_gpt.engine.corpus import load_corpus

    if args.time is not None and not args.time > 0:
        raise TuiGptError(f"--time must be positive, got {args.time}")
    points = grid(args)
    name = args.name or default_name(args.text, points)
    out = Path(args.out or Path("sweeps") / name)
    if (inside := checkpoint_around(out)) is not None:
        raise TuiGptError(f"{out}: inside the checkpoint {inside}, which a sweep must not change; pass another --out")
    digest = load_corpus(args.text).digest
    for point in points:
        point.key = key_of(point, args.text, digest)
    todo = [p for p in points if p.key not in done_runs(points, digest)]
    console = Console(stderr=True)
    skipped = len(points) - len(todo)
    console.print(f"sweep {shown(name)}: {len(points)} runs, {skipped} done already; checkpoints and logs in "
                  f"{shown(out)}", markup=False)  # fmt: skip
    runner = Sweep(args, points, name, out, digest)
    if todo:
        plan = Plan(cores(), len(todo), args.jobs)
        runner.run(todo, plan)
        console.print(f"ran {plan.note}", markup=False)
    Console().print(summary(points, done_runs(points, digest)))
    if runner.stop is not None:
        finished = len(done_runs(points, digest))
        console.print(f"sweep stopped by {signal.Signals(runner.stop).name}: {finished} of {len(points)} runs done; "
                      "the same command again runs the rest", markup=False)  # fmt: skip
        return 128 + runner.stop
    return 1 if runner.failed else 0
