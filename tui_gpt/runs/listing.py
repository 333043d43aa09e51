"""`tui-gpt runs`: the recorded runs as a table or JSON, filtered and sorted; `runs rm` removes entries.

Torch-free: it reads the registry (runs.py) and nothing else of a run.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import socket
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.measure import Measurement
from rich.table import Table
from rich.text import Text

from tui_gpt.engine.savedir import CheckpointLock, checkpoint_run_id, is_checkpoint_dir
from tui_gpt.errors import TuiGptError
from tui_gpt.runs.registry import Registry, RunRecord, flat_settings, labels, show_value
from tui_gpt.runs.tracking import EvalRow
from tui_gpt.visible import shown

# --sort: each key, and whether its best comes first when sorted ascending (val) or descending (tok/s).
SORTS: dict[str, tuple[Callable[[RunRecord], float], bool]] = {
    "started": (lambda r: r.started, True),
    "id": (lambda r: r.id, True),
    "val": (lambda r: r.final.val if r.final else math.inf, False),
    "bpb": (lambda r: r.final.val_bpb if r.final and r.final.val_bpb is not None else math.inf, False),
    "tok_s": (lambda r: r.end.tokens_per_s if r.end else 0.0, True),
    "steps": (lambda r: steps_of(r), True),
    "wall": (lambda r: r.end.wall_s if r.end else 0.0, True),
}


def steps_of(run: RunRecord) -> int:
    """How far the run got: its end's step, else its last evaluation's."""
    if run.end is not None:
        return run.end.step
    return run.final.step if run.final else 0


def checkpoint_of(run: RunRecord) -> str | None:
    return (run.end.checkpoint if run.end else None) or run.info.checkpoint


def _matches(value: Any, wanted: str) -> bool:
    """Whether a setting's `value` is what --where typed: numbers as numbers, None as 'default'."""
    if value is None:
        return wanted.lower() in ("default", "none")
    if isinstance(value, bool):
        return wanted.lower() in (("true", "1", "yes") if value else ("false", "0", "no"))
    if isinstance(value, int | float):
        try:
            return math.isclose(float(wanted), float(value), rel_tol=1e-9)
        except ValueError:
            return False
    return str(value) == wanted


def where_filter(conditions: list[str], runs: list[RunRecord]) -> list[RunRecord]:
    """The runs whose settings match every NAME=VALUE (NAME as an option, lr or n-layer; or a field, n_layer)."""
    known = {name for run in runs for name in flat_settings(run)}
    for condition in conditions:
        name, eq, wanted = condition.partition("=")
        name = name.strip().removeprefix("--")
        if not eq or not name:
            raise TuiGptError(f"--where {condition!r}: write SETTING=VALUE, e.g. lr=1e-3")
        if name not in known and name.replace("_", "-") in known:
            name = name.replace("_", "-")
        if runs and name not in known:
            raise TuiGptError(f"--where {name}: no recorded run has that setting; some are: {', '.join(sorted(known))}")
        runs = [r for r in runs if _matches(flat_settings(r).get(name), wanted.strip())]
    return runs


def select(registry: Registry, args: argparse.Namespace) -> list[RunRecord]:
    """The runs that --text, --status, --kind, --sweep and --where let through, in --sort's order."""
    runs = registry.runs(damaged=True)  # shown as damaged, so that they can be removed
    if args.text:
        runs = [r for r in runs if args.text in (r.info.text_name, r.info.text_name.split(" (")[0])
                or r.info.text_digest.startswith(args.text)]  # fmt: skip
    if args.status:
        runs = [r for r in runs if r.status == args.status]
    if args.kind:
        runs = [r for r in runs if r.info.kind == args.kind]
    if args.sweep:
        runs = [r for r in runs if r.info.sweep == args.sweep]
    runs = where_filter(args.where, runs)
    key, descending = SORTS[args.sort]
    runs.sort(key=key, reverse=descending)
    return runs[: args.limit] if args.limit else runs


def _clean(value: Any) -> Any:
    """JSON without NaN (not JSON): NaN and infinities as null."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _clean(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_clean(v) for v in value]
    return value


def _number(value: float | None, fmt: str) -> str:
    return "" if value is None or not math.isfinite(value) else format(value, fmt)


def _head(final: EvalRow | None) -> str:
    """The best induction score of an evaluation and its head ("0.61 L2.H3"), or nothing before any reading."""
    score = _number(final.induction if final else None, ".2f")
    return f"{score} {shown(str(final.induction_head or ''))[:12]}".strip() if final and score else ""


def _short_path(path: str | None) -> str:
    """A checkpoint's path, relative to the current folder where it is under it."""
    if not path:
        return ""
    try:
        return str(Path(path).relative_to(Path.cwd()))
    except ValueError:
        return path


# The table's columns, and which a narrow terminal leaves out first: never those that tell runs apart
# (settings: what differs between them) or how they did; the widest and least telling go first.
# induction: the best head's induction score at the last evaluation, and which head ("0.61 L2.H3").
COLUMNS: tuple[str, ...] = ("id", "started", "kind", "text", "tokenizer", "settings", "steps", "val", "bpb",
                            "induction", "tok/s", "wall", "status", "checkpoint")  # fmt: skip
DROPPED_FIRST = ("checkpoint", "started", "kind", "tokenizer", "induction", "wall", "tok/s", "text", "bpb")
NUMBERS = ("id", "steps", "val", "bpb", "tok/s", "wall")


def _cells(run: RunRecord, label: str) -> dict[str, str]:
    """One run's cells by column; every name and path with its control characters shown (`shown`)."""
    s = flat_settings(run)
    shape = f"{show_value(s.get('n-layer'))}x{show_value(s.get('n-head'))}x{show_value(s.get('n-embd'))}"
    final, end = run.final, run.end
    return {
        "id": str(run.id),
        "started": datetime.fromtimestamp(run.started).strftime("%m-%d %H:%M"),
        "kind": shown(run.info.kind),
        "text": shown(run.info.text_name),
        "tokenizer": shown(run.info.tokenizer),
        "settings": f"damaged: {run.damaged}" if run.damaged else shown(label or f"model {shape}"),
        "steps": str(steps_of(run)),
        "val": _number(final.val if final else None, ".4f"),
        "bpb": _number(final.val_bpb if final else None, ".3f"),
        "induction": _head(final),
        "tok/s": _number(end.tokens_per_s if end else None, ",.0f"),
        "wall": _number(end.wall_s if end else None, ".1f"),
        "status": "damaged" if run.damaged else run.status,
        "checkpoint": shown(_short_path(checkpoint_of(run))),
    }


def _labels(runs: list[RunRecord]) -> list[str]:
    """What differs between the runs that could be read; a damaged run's settings are unknown."""
    whole = [r for r in runs if not r.damaged]
    by_id = dict(zip((r.id for r in whole), labels(whole), strict=True))
    return [by_id.get(r.id, "") for r in runs]


def table(runs: list[RunRecord], columns: tuple[str, ...] = COLUMNS) -> Table:
    """The runs as a Rich table; 'settings' is what differs between them (the model's shape where nothing does)."""
    t = Table(title=f"{len(runs)} recorded run{'s' * (len(runs) != 1)}")
    damaged = [str(r.id) for r in runs if r.damaged]
    if damaged:
        t.caption = f"damaged entries: remove them with tui-gpt runs rm {' '.join(damaged)}"
    for name in columns:
        # Short cells never wrap: the text, settings and checkpoint take what width is left.
        wraps = name in ("text", "settings", "checkpoint")
        t.add_column(name, justify="right" if name in NUMBERS else "left", no_wrap=not wraps,
                     overflow="fold" if name == "checkpoint" else "ellipsis")  # fmt: skip
    for run, label in zip(runs, _labels(runs), strict=True):
        cells = _cells(run, label)
        t.add_row(*(Text(cells[name]) for name in columns))  # names of texts and folders: never markup
    return t


def fitted(runs: list[RunRecord], console: Console) -> Table:
    """The table, leaving out the least telling columns (`DROPPED_FIRST`) until it fits the console's width."""
    columns = COLUMNS
    for name in DROPPED_FIRST:
        if _natural_width(runs, columns) <= console.width:
            break
        columns = tuple(c for c in columns if c != name)
    return table(runs, columns)


def _console(runs: list[RunRecord]) -> Console:
    """The console for the table: a terminal's width (or COLUMNS); a pipe, as wide as the whole table."""
    console = Console()
    if console.is_terminal or os.environ.get("COLUMNS"):
        return console
    return Console(width=max(80, _natural_width(runs)))


def _natural_width(runs: list[RunRecord], columns: tuple[str, ...] = COLUMNS) -> int:
    """How wide the table is with nothing wrapped or cut."""
    wide = Console(width=100_000)
    return Measurement.get(wide, wide.options, table(runs, columns)).maximum


def list_runs(args: argparse.Namespace) -> int:
    with Registry() as registry:
        runs = select(registry, args)
    if args.json:
        print(json.dumps(_clean([r.to_dict() for r in runs]), indent=1))
    elif not runs:
        Console(stderr=True).print(f"no recorded runs match (the registry is {shown(registry.path)})", markup=False)
    else:
        console = _console(runs)
        console.print(fitted(runs, console))
    return 0


def remove_runs(args: argparse.Namespace) -> int:
    """`runs rm`: the entries, and with --with-checkpoints the tui-gpt checkpoints no remaining run saved to."""
    out = Console(stderr=True)
    with Registry() as registry:
        everything = registry.runs(damaged=True)  # a damaged entry can be removed like any other
        by_id = {r.id: r for r in everything}
        missing = [i for i in args.ids if i not in by_id]
        if missing:
            raise TuiGptError(f"no run {', '.join(map(str, missing))} in the registry ({shown(registry.path)})")
        running = [by_id[i] for i in dict.fromkeys(args.ids) if by_id[i].status == "running"]
        if running and not args.force:
            raise TuiGptError(_still_running(running))
        doomed = [by_id[i] for i in dict.fromkeys(args.ids)]
        registry.remove([r.id for r in doomed])
    out.print(f"removed run{'s' * (len(doomed) > 1)} {', '.join(str(r.id) for r in doomed)} from the registry",
              markup=False)  # fmt: skip
    if args.with_checkpoints:
        kept = [r for r in everything if r.id not in {d.id for d in doomed}]
        for run in doomed:
            out.print(shown(_remove_checkpoint(run, kept)), markup=False)
    return 0


def _still_running(running: list[RunRecord]) -> str:
    """Why `runs rm` refuses these runs, and the way on where they are not running after all (`--force`)."""
    here = socket.gethostname()
    where = [f"run {r.id} (pid {r.pid}{'' if r.host == here else ' on ' + (shown(r.host) or 'an unknown host')})"
             for r in running]  # fmt: skip
    ids = " ".join(str(r.id) for r in running)
    return (f"{', '.join(where)} {'is' if len(running) == 1 else 'are'} still running, as far as this machine "
            f"can tell; stop {'it' if len(running) == 1 else 'them'} first, or, if not (a stale entry), "
            f"remove anyway: tui-gpt runs rm --force {ids}")  # fmt: skip


def _remove_checkpoint(run: RunRecord, kept: list[RunRecord]) -> str:
    """Remove the checkpoint of `run` if it is still the one that run saved and no remaining run saved
    there; one line on what happened. A folder is deleted only when the record names it absolutely,
    it is reached through no symlink, and its checkpoint carries the run's own id."""
    where = checkpoint_of(run)
    if not where:
        return f"run {run.id}: no checkpoint"
    path = Path(where)
    if not path.is_absolute():
        return f"run {run.id}: kept {where}: recorded as a relative path, so its folder is unknown; remove it by hand"
    if not path.exists() and not path.is_symlink():
        return f"run {run.id}: {path} is already gone"
    others = [r.id for r in kept if (c := checkpoint_of(r)) and (c == where or Path(c).resolve() == path.resolve())]
    if others:
        return f"run {run.id}: kept {path}: run {others[0]} also saved there"
    real = path.resolve()
    if real != path:
        return f"run {run.id}: kept {path}: it leads to {real}, through a symlink; remove it by hand"
    if not is_checkpoint_dir(path):
        return f"run {run.id}: kept {path}: not a tui-gpt checkpoint"
    if not run.info.run_id:
        return f"run {run.id}: kept {path}: recorded without the run's id (an older tui-gpt); remove it by hand"
    try:
        with CheckpointLock(path, advice="kept it"):  # never under a run that is saving there
            if checkpoint_run_id(path) != run.info.run_id:
                return f"run {run.id}: kept {path}: another run saved there since"
            shutil.rmtree(path)
    except TuiGptError as exc:
        return f"run {run.id}: {exc}"
    except OSError as exc:
        return f"run {run.id}: could not remove {path}: {exc.strerror or exc}"
    return f"run {run.id}: removed checkpoint {path}"


def cmd_runs(args: argparse.Namespace) -> int:
    return remove_runs(args) if args.action == "rm" else list_runs(args)
