"""Exports: the loss history and the training examples as CSV."""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from tui_gpt.probes.predict import Example


def _cell(v: float | None) -> str:
    return "" if v is None else repr(float(v))


def history_csv(history: Mapping[str, Sequence[float]]) -> str:
    """A `History.to_dict()` as CSV: one row per step; the eval columns only on evaluation steps, else blank.

    The evaluation before the first step (step 0) gets its own row with blank train_loss and lr.
    """
    rows: dict[int, list[str]] = {}
    for step, loss, lr in zip(history.get("steps", []), history.get("loss", []), history.get("lr", []), strict=False):
        rows[int(step)] = [_cell(loss), _cell(lr), "", ""]
    evals = zip(history.get("eval_steps", []), history.get("eval_val", []), history.get("eval_train", []), strict=False)
    for step, val, tr in evals:
        row = rows.setdefault(int(step), ["", "", "", ""])
        # History records a missing eval train loss as NaN: write it as blank, like any missing value.
        row[2], row[3] = _cell(val), "" if tr is None or math.isnan(tr) else _cell(tr)
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["step", "train_loss", "lr", "val_loss", "eval_train_loss"])
    for step in sorted(rows):
        w.writerow([step, *rows[step]])
    return buf.getvalue()


def examples_csv(rows: Sequence[Example], labels: Sequence[str]) -> str:
    """Training examples as CSV; `labels[i]` is the text of the i-th token the model saw.

    Each row: the position, the text before it, the target token's text, p, -log p and rank.
    """
    if rows and max(r.position for r in rows) >= len(labels):
        raise ValueError(f"{len(labels)} labels do not cover position {max(r.position for r in rows)}")
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["position", "prefix", "target", "p", "neg_log_p", "rank"])
    for r in rows:
        w.writerow([r.position, "".join(labels[: r.position]), labels[r.position], repr(r.prob), repr(r.nll), r.rank])
    return buf.getvalue()
