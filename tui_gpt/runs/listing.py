"""`tui-gpt runs`: the recorded runs as a table or JSON, filtered and sorted; `runs rm` removes entries.

Torch-free: it reads the registry (runs.py) and nothing else of a run.
"""

from __future__ import annotations

import argparse
import json
import math
import shutil
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table
from rich.text import Text

from tui_gpt.engine.savedir import CheckpointLock, checkpoint_run_id, is_checkpoint_dir
from tui_gpt.errors import TuiGptError
from tui_gpt.runs.registry import Registry, RunRecord, flat_settings, labels, show_value

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
    runs = registry.runs()
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


def _short_path(path: str | None) -> str:
    """A checkpoint's path, relative to the current folder where it is under it."""
    if not path:
        return ""
    try:
        return str(Path(path).relative_to(Path.cwd()))
    except ValueError:
        return path


def table(runs: list[RunRecord]) -> Table:
    """The runs as a Rich table; 'settings' is what differs between them (the model's shape where nothing does)."""
    t = Table(title=f"{len(runs)} recorded run{'s' * (len(runs) != 1)}")
    numbers = ("id", "steps", "val", "bpb", "tok/s", "wall")
    for name in ("id", "started", "kind", "text", "tokenizer", "settings", *numbers[1:], "status"):
        # Short cells never wrap: the text, settings and checkpoint take what width is left.
        t.add_column(name, justify="right" if name in numbers else "left", no_wrap=name not in ("text", "settings"))
    t.add_column("checkpoint", overflow="fold")
    for run, label in zip(runs, labels(runs), strict=True):
        s = flat_settings(run)
        shape = f"{show_value(s.get('n-layer'))}x{show_value(s.get('n-head'))}x{show_value(s.get('n-embd'))}"
        final, end = run.final, run.end
        cells = (
            str(run.id),
            datetime.fromtimestamp(run.started).strftime("%m-%d %H:%M"),
            run.info.kind,
            run.info.text_name,
            run.info.tokenizer,
            label or f"model {shape}",
            str(steps_of(run)),
            _number(final.val if final else None, ".4f"),
            _number(final.val_bpb if final else None, ".3f"),
            _number(end.tokens_per_s if end else None, ",.0f"),
            _number(end.wall_s if end else None, ".1f"),
            run.status,
            _short_path(checkpoint_of(run)),
        )
        t.add_row(*(Text(cell) for cell in cells))  # names of texts and folders: never markup
    return t


def list_runs(args: argparse.Namespace) -> int:
    with Registry() as registry:
        runs = select(registry, args)
    if args.json:
        print(json.dumps(_clean([r.to_dict() for r in runs]), indent=1))
    elif not runs:
        Console(stderr=True).print(f"no recorded runs match (the registry is {registry.path})", markup=False)
    else:
        Console().print(table(runs))
    return 0


def remove_runs(args: argparse.Namespace) -> int:
    """`runs rm`: the entries, and with --with-checkpoints the tui-gpt checkpoints no remaining run saved to."""
    out = Console(stderr=True)
    with Registry() as registry:
        everything = registry.runs()
        by_id = {r.id: r for r in everything}
        missing = [i for i in args.ids if i not in by_id]
        if missing:
            raise TuiGptError(f"no run {', '.join(map(str, missing))} in the registry ({registry.path})")
        running = [i for i in args.ids if by_id[i].status == "running"]
        if running:
            raise TuiGptError(f"run {', '.join(map(str, running))} is still running; stop it first, then remove it")
        doomed = [by_id[i] for i in dict.fromkeys(args.ids)]
        registry.remove([r.id for r in doomed])
    out.print(f"removed run{'s' * (len(doomed) > 1)} {', '.join(str(r.id) for r in doomed)} from the registry",
              markup=False)  # fmt: skip
    if args.with_checkpoints:
        kept = [r for r in everything if r.id not in {d.id for d in doomed}]
        for run in doomed:
            out.print(_remove_checkpoint(run, kept), markup=False)
    return 0


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
