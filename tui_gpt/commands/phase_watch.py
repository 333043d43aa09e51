"""`tui-gpt circuits`: train the circuits experiment headless and watch an induction head form (#28).

The model and the text are the lab key's (settings.circuits_spec, engine/synthetic.py); the loop is the
trainer's, which reads every head every `--head-interval` steps. Each reading is one line; at the end,
the phase change that probes/phase.py finds in the run's readings, in numbers and in words.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any

from rich.console import Console

from tui_gpt.engine.savedir import check_out
from tui_gpt.engine.session import open_run
from tui_gpt.probes.phase import PhaseChange, best_head, find_phase_change
from tui_gpt.settings import CIRCUIT_STEPS, circuits_spec


def reading_line(step: int, total: int | None, loss: float, heads: dict[str, Any], wall: float) -> str:
    """One reading: the step, the loss, the best induction and previous-token heads, the repeat probe's icl."""
    layer, head, score = best_head(heads["induction"])
    p_layer, p_head, prev = best_head(heads["previous_token"])
    of = f"/{total:,}" if total else ""
    return (
        f"step {step:>6,}{of}  loss {loss:.3f}  induction L{layer}H{head} {score:.2f}  "
        f"previous-token L{p_layer}H{p_head} {prev:.2f}  icl {heads['icl']:+.2f} nats  {wall:6.1f} s"
    )


def phase_lines(change: PhaseChange | None, walls: dict[int, float], steps: int, best: float) -> list[str]:
    """The end of the run: where the phase change was, and what it did, or why none was found."""
    if change is None:
        return [
            f"no phase change in {steps:,} steps: the best induction score reached {best:.2f}, which is not yet a "
            "rise of 0.2 over its start; train longer (--steps)"
        ]
    return [
        f"phase change at step {change.step:,} ({walls.get(change.step, float('nan')):.0f} s into training), "
        f"between steps {change.start:,} and {change.end:,}",
        f"best induction head layer {change.layer} head {change.head}: "
        f"{change.induction_before:.2f} -> {change.induction_after:.2f}; "
        f"icl {change.icl_before:+.2f} -> {change.icl_after:+.2f} nats",
        change.words(),
    ]


def icl_line(steps: list[int], scores: list[dict[str, Any]]) -> str:
    """The repeat probe's in-context score over the run: first, lowest, and the step it crossed halfway.

    Read apart from the induction score: a model can learn to copy with heads the prefix-matching score
    does not count (docs/learning-speed.md, "Watching an induction head form").
    """
    icl = [float(s["icl"]) for s in scores]
    low = min(icl)
    half = icl[0] + (low - icl[0]) / 2
    at = next(step for step, value in zip(steps, icl, strict=True) if value <= half)
    return (
        f"loss on the repeated half minus the first (icl): {icl[0]:+.2f} -> {low:+.2f} nats at its lowest, "
        f"halfway at step {at:,}"
    )


def cmd_circuits(args: argparse.Namespace) -> int:
    out = Console(highlight=False, soft_wrap=True)  # one reading a line, in a log too
    spec = circuits_spec(args.seed)
    if args.head_interval is not None:
        spec.train.head_interval = args.head_interval
    steps = args.steps if args.steps or args.time else CIRCUIT_STEPS
    out_dir = check_out(Path(args.out)) if args.out else None  # refused before training, not after it
    run = open_run(spec)
    trainer = run.trainer
    trainer.use_threads(args.threads)
    mc = trainer.model.config
    out.print(
        f"circuits: a {mc.n_layer}-layer model ({mc.n_head} heads, {mc.n_embd} wide, "
        f"{trainer.model.num_params():,} parameters) on {run.corpus.name}; seed {args.seed}; "
        f"{trainer.choice_note}; every head read every {spec.train.head_interval} steps",
        markup=False,
    )
    start = time.perf_counter()
    walls: dict[int, float] = {}
    for ev in trainer.run(steps=steps, seconds=args.time):
        if ev.heads is None:
            continue
        walls[ev.step] = time.perf_counter() - start
        out.print(reading_line(ev.step, steps, ev.loss, ev.heads, walls[ev.step]), markup=False)
    history = trainer.history
    took = time.perf_counter() - start
    out.print(
        f"{trainer.step:,} steps in {took:.0f} s ({trainer.step / max(took, 1e-9):.1f} steps/s, readings included)"
    )
    change = find_phase_change(history.head_steps, history.head_scores)
    best = max((best_head(s["induction"])[2] for s in history.head_scores), default=0.0)
    for line in phase_lines(change, walls, trainer.step, best):
        out.print(line, markup=False)
    if history.head_scores:
        out.print(icl_line(history.head_steps, history.head_scores), markup=False)
    if out_dir is not None:
        path = run.save(out_dir)
        out.print(f"saved to {path}: tui-gpt heads {path} scores it again", markup=False)
    return 0
