"""Exports: the loss history (with bits per byte and the head scores) and the training examples as CSV."""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from tui_gpt.probes.phase import best_head

if TYPE_CHECKING:
    from tui_gpt.probes.predict import Example


def _cell(v: float | None) -> str:
    return "" if v is None else repr(float(v))


HISTORY_COLUMNS = (
    "step",
    "train_loss",
    "lr",
    "val_loss",
    "eval_train_loss",
    "val_bpb",  # the val loss in bits per byte of the val text: comparable across tokenizers
    # on the steps that read every head (TrainEvent.heads): the best head of each kind, layer.head from 1
    "best_induction",
    "best_induction_head",
    "best_previous_token",
    "best_previous_token_head",
    "icl",  # the repeat probe's second-half loss minus its first (nats)
    "in_context",  # the val text's late-token loss minus its early-token loss (nats; Olsson et al.'s 500 - 50)
)


def _head(table: Sequence[Sequence[float]]) -> list[str]:
    layer, head, score = best_head(table)
    return [_cell(score), f"L{layer}.H{head}"]


def history_csv(history: Mapping[str, Any]) -> str:
    """A `History.to_dict()` as CSV: one row per step; the eval columns only on evaluation steps, the head
    columns only on the steps that read the heads, else blank.

    The evaluation before the first step (step 0) gets its own row with blank train_loss and lr.
    """
    width = len(HISTORY_COLUMNS) - 1
    rows: dict[int, list[str]] = {}
    for step, loss, lr in zip(history.get("steps", []), history.get("loss", []), history.get("lr", []), strict=False):
        rows[int(step)] = [_cell(loss), _cell(lr)] + [""] * (width - 2)
    bpt = history.get("val_bytes_per_token")
    evals = zip(history.get("eval_steps", []), history.get("eval_val", []), history.get("eval_train", []), strict=False)
    for step, val, tr in evals:
        row = rows.setdefault(int(step), [""] * width)
        # History records a missing eval train loss as NaN: write it as blank, like any missing value.
        row[2], row[3] = _cell(val), "" if tr is None or math.isnan(tr) else _cell(tr)
        row[4] = _cell(val / math.log(2) / bpt) if bpt else ""  # trainer.Trainer.bits_per_byte
    for step, heads in zip(history.get("head_steps", []), history.get("head_scores", []), strict=False):
        row = rows.setdefault(int(step), [""] * width)
        in_context = _cell(heads.get("in_context"))
        row[5:] = [*_head(heads["induction"]), *_head(heads["previous_token"]), _cell(heads["icl"]), in_context]
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(HISTORY_COLUMNS)
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
