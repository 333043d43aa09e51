"""Earlier runs on the live run's text, as the loss chart draws them: plain data from the run registry's records.

Each shown group of runs (runs that differ only by seed, `runs.seed_groups`) is one faint val-loss
line: the mean over its seeds, with a min-max band when it has more than one.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from tui_gpt.runs.registry import RunRecord, differences, seed_groups, show_value
from tui_gpt.runs.tracking import EvalRow

# Theme variables for the overlays' lines, in turn; the chart blends them into the background (faint).
OVERLAY_COLOURS = ("foreground", "text-error", "text-secondary", "text-accent")  # apart from the live lines
FINISHED = ("done", "stopped")  # a run that ended on its own or was stopped: the default overlay


@dataclass
class OverlayLine:
    """One group of earlier runs: its val loss along the chart's axis (the seeds' mean, and their min-max band),
    and what differs from the live run."""

    label: str  # "#12 lr 1e-3 vs 1e-2": the runs' ids, then their value vs the live run's
    colour: str  # a theme variable (OVERLAY_COLOURS)
    ids: list[int]
    xs: list[float]
    ys: list[float]  # the val loss; the mean over the seeds for a group
    lo: list[float] = field(default_factory=list)  # the band: min and max over the seeds (empty for one run)
    hi: list[float] = field(default_factory=list)


def x_of(row: EvalRow, axis: str) -> float:
    """Where an evaluation sits along `axis` (a key of curve.AXES)."""
    return float(row.wall_s if axis == "time" else row.tokens if axis == "tokens" else row.step)


def group_points(group: list[RunRecord], axis: str) -> tuple[list[float], list[float], list[float], list[float]]:
    """(xs, mean, min, max) of the group's val loss at the steps every run of it evaluated.

    Along time, x is the mean of the runs' seconds at that step: seeds run at about the same speed.
    """
    by_step = [{row.step: row for row in run.evals} for run in group]
    common = sorted(set.intersection(*(set(rows) for rows in by_step)))
    xs, mean, lo, hi = [], [], [], []
    for step in common:
        rows = [rows[step] for rows in by_step]
        vals = [row.val for row in rows]
        xs.append(sum(x_of(row, axis) for row in rows) / len(rows))
        mean.append(sum(vals) / len(vals))
        lo.append(min(vals))
        hi.append(max(vals))
    return xs, mean, lo, hi


def what_differs(run: RunRecord, live: RunRecord, leave_out: tuple[str, ...] = ()) -> str:
    """`run`'s settings that differ from the live run's: 'lr 1e-3 vs 1e-2 · seed 1 vs 0'."""
    parts = [
        f"{name} {show_value(ours)} vs {show_value(theirs)}"
        for name, (ours, theirs) in differences([run, live]).items()
        if name not in leave_out
    ]
    return " · ".join(parts) or "same settings"


def label(group: list[RunRecord], live: RunRecord) -> str:
    ids = " ".join(f"#{run.id}" for run in group)
    if len(group) == 1:
        return f"{ids} {what_differs(group[0], live)}"
    return f"{ids} {what_differs(group[0], live, ('seed',))} ({len(group)} seeds: mean, band)"


def overlay_lines(shown: list[RunRecord], live: RunRecord, axis: str) -> list[OverlayLine]:
    """The lines for the `shown` runs, compared with `live`, along `axis`; groups without a common step are left out."""
    lines: list[OverlayLine] = []
    for group in seed_groups([run for run in shown if run.evals]):
        xs, mean, lo, hi = group_points(group, axis)
        if not xs:
            continue
        colour = OVERLAY_COLOURS[len(lines) % len(OVERLAY_COLOURS)]
        band = (lo, hi) if len(group) > 1 else ([], [])
        lines.append(OverlayLine(label(group, live), colour, [run.id for run in group], xs, mean, *band))
    return lines


def last_finished(found: list[RunRecord]) -> set[int]:
    """The default overlay: the newest run (`found` is newest first) that finished and was evaluated."""
    return next(({run.id} for run in found if run.status in FINISHED and run.evals), set())


def row_cells(run: RunRecord, live: RunRecord) -> tuple[str, ...]:
    """A run as the Runs screen lists it: started, kind, what differs, status, steps, final val and bits per byte."""
    final = run.final
    steps = run.end.step if run.end else final.step if final else 0
    bpb = final.val_bpb if final else None
    return (
        f"#{run.id}",
        time.strftime("%Y-%m-%d %H:%M", time.localtime(run.started)),
        run.info.kind,
        what_differs(run, live),
        run.status,
        f"{steps:,}",
        f"{final.val:.3f}" if final else "-",
        f"{bpb:.3f}" if bpb is not None else "-",
    )
