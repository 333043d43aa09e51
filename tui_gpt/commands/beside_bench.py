"""`tui-gpt bench --beside N [--nanogpt DIR]`: training speed on a quiet machine and beside N nice-19 torch jobs.

A person's machine is rarely idle. This starts N torch jobs at nice 19 (each a matmul loop on every
core) and measures, in turn, quiet (the jobs stopped) and beside them (the jobs running):
`tui-gpt bench` with its defaults, the same with libgomp's spinning waits (as tui-gpt ran before it
set OMP_WAIT_POLICY for itself), and with `--nanogpt` nanoGPT's own train.py on its CPU recipe
(4 x 128, block 64, batch 12, fp32, compile off) on the same text. Every program runs in its own
process, in an order that alternates each round, so a load from elsewhere falls on all alike; each
figure is printed with the load average when it was taken. Tokens/s are training steps only, for
both (evaluations left out): tokens over the summed time of the timed steps.
"""

from __future__ import annotations

import argparse
import os
import pickle
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

from tui_gpt.errors import TuiGptError
from tui_gpt.settings import cores, openmp_set_here

ROUNDS = 2  # quiet and beside, each this many times, taking turns
EVAL_INTERVAL = 250  # both programs evaluate this often (tui-gpt bench's default); those steps are not timed
# nanoGPT's CPU recipe (its README's "I only have a macbook" run) on shakespeare_char's config, as in the
# anchors: character level, 4 layers of 128, block 64, batch 12, no dropout, fp32, no torch.compile.
NANOGPT_RECIPE = [
    "--device=cpu",
    "--compile=False",
    "--eval_iters=20",
    f"--eval_interval={EVAL_INTERVAL}",
    "--log_interval=1",
    "--block_size=64",
    "--batch_size=12",
    "--n_layer=4",
    "--n_head=4",
    "--n_embd=128",
    "--dropout=0.0",
    "--always_save_checkpoint=False",
]
NANOGPT_TOKENS_PER_STEP = 12 * 64
NANOGPT_ITER = re.compile(r"^iter (\d+): loss \S+, time ([0-9.]+)ms", re.M)
BENCH_LINE = re.compile(r"^bench: steps=\d+ tok_per_s=([0-9.]+)", re.M)
# One nice-19 torch job: a matmul loop on every core, as a person's other work might be.
LOAD = (
    "import ctypes, os, signal, sys\n"
    "os.nice(19)\n"
    "if sys.platform.startswith('linux'):  # end with the bench, however it ends\n"
    "    ctypes.CDLL(None).prctl(1, signal.SIGKILL, 0, 0, 0)\n"
    "    if os.getppid() != int(sys.argv[2]):\n"
    "        sys.exit()\n"
    "import torch\n"
    "torch.set_num_threads(int(sys.argv[1]))\n"
    "a = torch.randn(2000, 2000)\n"
    "while True:\n"
    "    a @ a\n"
)


# tui-gpt as it ran before it set OMP_WAIT_POLICY for itself: libgomp's own spin before a wait sleeps.
SPINNING = "tui-gpt, spinning waits"
SPIN = {"GOMP_SPINCOUNT": "300000"}


@dataclass
class Figure:
    """One program's tokens/s in one condition of one round, and the load average when it ended."""

    program: str  # "tui-gpt" | "nanoGPT"
    beside: bool
    tok_s: float
    load: float


def nanogpt_tok_s(log: str) -> float:
    """nanoGPT's training tokens/s from its per-iteration log: evaluation iterations (and the first) left out."""
    times = [float(ms) for it, ms in NANOGPT_ITER.findall(log) if int(it) % EVAL_INTERVAL != 0 and int(it) > 1]
    if not times:
        raise TuiGptError("bench --nanogpt: nanoGPT's train.py printed no iteration times")
    return NANOGPT_TOKENS_PER_STEP * len(times) / (sum(times) / 1000)


def bench_tok_s(out: str) -> float:
    """tui-gpt bench's tokens/s from its closing `bench:` line."""
    m = BENCH_LINE.search(out)
    if not m:
        raise TuiGptError("bench --beside: tui-gpt bench printed no 'bench:' line")
    return float(m.group(1))


def prepare_nanogpt(repo: Path, text: str, work: Path) -> None:
    """nanoGPT's shakespeare_char prepare.py on `text`, offline, in `work`, with its configurator beside it.

    train.py reads `configurator.py` and `data/` from its working folder, so both go to a temporary
    one: nothing in the checkout is written.
    """
    shakespeare_char_data(text, work)
    shutil.copy(repo / "configurator.py", work / "configurator.py")


def shakespeare_char_data(text: str, work: Path) -> Path:
    """nanoGPT's shakespeare_char prepare.py, offline: a character per token, the last 10% for validation."""
    import numpy as np

    stoi = {c: i for i, c in enumerate(sorted(set(text)))}
    folder = work / "data" / "shakespeare_char"
    folder.mkdir(parents=True)
    cut = int(len(text) * 0.9)
    np.array([stoi[c] for c in text[:cut]], dtype=np.uint16).tofile(folder / "train.bin")
    np.array([stoi[c] for c in text[cut:]], dtype=np.uint16).tofile(folder / "val.bin")
    meta = {"vocab_size": len(stoi), "itos": {i: c for c, i in stoi.items()}, "stoi": stoi}
    (folder / "meta.pkl").write_bytes(pickle.dumps(meta))
    return folder


def check_nanogpt(repo: Path) -> None:
    """A checkout of karpathy/nanoGPT, or one line saying what is missing."""
    for name in ("train.py", "model.py", "configurator.py", "config/train_shakespeare_char.py"):
        if not (repo / name).is_file():
            raise TuiGptError(f"--nanogpt {repo}: no {name} there; give a checkout of karpathy/nanoGPT")


def user_env() -> dict[str, str]:
    """The environment as the user had it: without the OpenMP wait policy tui-gpt sets for itself."""
    env = dict(os.environ)
    for name in openmp_set_here():
        env.pop(name, None)
    return env


class Loads:
    """N nice-19 torch jobs, started stopped; `run(True)` lets them work, `run(False)` stops them."""

    def __init__(self, n: int) -> None:
        self.procs = [
            subprocess.Popen(
                [sys.executable, "-c", LOAD, str(cores()), str(os.getpid())], env=user_env(), start_new_session=True
            )
            for _ in range(n)
        ]
        self.run(False)

    def run(self, on: bool) -> None:
        for p in self.procs:
            os.kill(p.pid, signal.SIGCONT if on else signal.SIGSTOP)

    def close(self) -> None:
        for p in self.procs:
            p.kill()
            p.wait()


def _run(cmd: list[str], cwd: Path | None, env: dict[str, str], what: str) -> str:
    r = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True)
    if r.returncode != 0:
        last = (r.stderr.strip().splitlines() or ["no message"])[-1]
        raise TuiGptError(f"bench --beside: {what} failed (exit {r.returncode}): {last}")
    return r.stdout


def summary_lines(figures: list[Figure], n_loads: int) -> list[str]:
    """Medians per program and condition, the ratio tui-gpt / nanoGPT in each, and what each kept beside the load."""
    med: dict[tuple[str, bool], float] = {}
    for program in ("tui-gpt", SPINNING, "nanoGPT"):
        for beside in (False, True):
            v = [f.tok_s for f in figures if f.program == program and f.beside == beside]
            if v:
                med[(program, beside)] = statistics.median(v)
    where = {False: "quiet", True: f"beside {n_loads} nice-19 torch job{'s' if n_loads != 1 else ''}"}
    lines, machine = [], []
    for beside in (False, True):
        ours, theirs = med.get(("tui-gpt", beside)), med.get(("nanoGPT", beside))
        if ours is None:
            continue
        text = f"{where[beside]}: tui-gpt {ours:,.0f} tok/s"
        if theirs is not None:
            text += f", nanoGPT {theirs:,.0f} tok/s: {ours / theirs:.2f}x"
            machine.append(f"{'beside' if beside else 'quiet'}_ratio={ours / theirs:.2f}")
        if (spun := med.get((SPINNING, beside))) is not None:
            text += f"; with spinning waits {spun:,.0f} tok/s"
            machine.append(f"{'beside' if beside else 'quiet'}_spinning_tok_s={spun:.0f}")
        lines.append(text + " (medians)")
    for program, name in (("tui-gpt", "tuigpt"), (SPINNING, "spinning"), ("nanoGPT", "nanogpt")):
        quiet, busy = med.get((program, False)), med.get((program, True))
        if quiet and busy:
            lines.append(f"{program} kept {100 * busy / quiet:.0f}% of its quiet speed beside the load")
            machine.append(f"{name}_kept={busy / quiet:.2f}")
    return [*lines, "bench-beside: " + " ".join(machine)]


def bench_beside(args: argparse.Namespace) -> int:
    n_loads = args.beside or 0
    if n_loads < 0:
        raise TuiGptError(f"--beside must be 0 or more, got {n_loads}")
    repo = Path(args.nanogpt) if args.nanogpt is not None else None
    if repo is not None:
        check_nanogpt(repo)
    from tui_gpt.engine.corpus import load_corpus

    text = "\n".join(load_corpus(args.text).texts)
    ours = [sys.executable, "-m", "tui_gpt", "bench", "--text", *args.text, "--steps", str(args.steps), "--no-record"]
    nano_cmd = []
    if repo is not None:
        nano_cmd = [
            sys.executable,
            str(repo.resolve() / "train.py"),
            str(repo.resolve() / "config" / "train_shakespeare_char.py"),
            *NANOGPT_RECIPE,
            f"--max_iters={args.steps}",
            f"--lr_decay_iters={args.steps}",
        ]
    programs = ["tui-gpt", *([SPINNING] if openmp_set_here() else []), *(["nanoGPT"] if repo is not None else [])]
    figures: list[Figure] = []
    loads = Loads(n_loads)
    try:
        with tempfile.TemporaryDirectory(prefix="tui-gpt-nanogpt-") as tmp:
            work = Path(tmp)
            if repo is not None:
                prepare_nanogpt(repo, text, work)
            conditions = [False, True] if n_loads else [False]
            for rnd in range(ROUNDS):
                for beside in conditions if rnd % 2 == 0 else conditions[::-1]:
                    loads.run(beside)
                    for program in programs if (rnd + beside) % 2 == 0 else programs[::-1]:
                        if program == "tui-gpt":
                            tok_s = bench_tok_s(_run(ours, None, dict(os.environ), "tui-gpt bench"))
                        elif program == SPINNING:
                            tok_s = bench_tok_s(_run(ours, None, {**user_env(), **SPIN}, "tui-gpt bench"))
                        else:
                            tok_s = nanogpt_tok_s(_run(nano_cmd, work, user_env(), "nanoGPT's train.py"))
                        fig = Figure(program, beside, tok_s, os.getloadavg()[0])
                        figures.append(fig)
                        print(
                            f"round {rnd + 1}, {'beside the load' if beside else 'quiet'}: {program} "
                            f"{tok_s:,.0f} tok/s  (load average {fig.load:.2f})",
                            flush=True,
                        )
                    loads.run(False)
    finally:
        loads.close()
    print("\n".join(summary_lines(figures, n_loads)))
    return 0
