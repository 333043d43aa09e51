"""The loss curve the app has received so far: plain data that the chart and the hints read."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

from tui_gpt.probes.hints import best_eval

if TYPE_CHECKING:
    from tui_gpt.app.widgets.overlay_lines import OverlayLine

# Theme variables for the chart's lines; the legend under the chart uses the same.
LINE_COLOURS = {"train": "primary", "val": "success", "uniform": "foreground-muted", "bigram": "warning"}
# Theme variables for the heads view (#28): its chart's lines, its heatmaps' full shade, its phase-change mark.
HEAD_COLOURS = {
    "induction": "success",
    "previous": "primary",
    "icl": "warning",
    "in_context": "secondary",
    "phase": "error",
}
BEST_MARKER = "◆"  # the best val loss so far: on the chart, and before its numbers under it


# The x axes the chart draws the live run and the overlays against (the toggle's order), and their labels.
# The live run counts seconds of training (TrainEvent.elapsed), a recorded one its wall time (EvalRow.wall_s).
AXES = {"steps": "step", "time": "seconds", "tokens": "tokens"}


class Curve:
    """Every step's train loss and every evaluation, in trainer.History's shape, and when each came;
    and what the chart draws with them: the axis, and the earlier runs overlaid (overlay.OverlayLine)."""

    def __init__(self) -> None:
        self.baselines: dict[str, float] = {}
        self.tokens_per_step = 0  # from the Ready event: the tokens axis, and epochs
        self.train_tokens = 0  # tokens in the train split, from the Ready event: epochs
        self.axis = next(iter(AXES))
        self.overlays: list[OverlayLine] = []  # earlier runs of this text (app/overlays.py sets them)
        self.set_history({})

    def set_history(self, history: dict) -> None:
        self.steps: list[int] = list(history.get("steps", []))
        self.loss: list[float] = list(history.get("loss", []))
        self.lr: list[float] = list(history.get("lr", []))
        self.eval_steps: list[int] = list(history.get("eval_steps", []))
        self.eval_train: list[float] = list(history.get("eval_train", []))
        self.eval_val: list[float] = list(history.get("eval_val", []))
        self.val_bytes_per_token: float | None = history.get("val_bytes_per_token")
        # Every head's scores, on the steps that read them (TrainEvent.heads: probes.phase reads these lists).
        self.head_steps: list[int] = list(history.get("head_steps", []))
        self.head_scores: list[dict] = list(history.get("head_scores", []))
        # Seconds of training at each step and evaluation; a resumed run's history has none (NaN).
        self.elapsed: list[float] = [math.nan] * len(self.steps)
        self.eval_elapsed: list[float] = [math.nan] * len(self.eval_steps)
        self.dirty = True

    def add(self, events: list[dict]) -> None:
        """Append a batch of TrainEvent dicts."""
        for ev in events:
            # The evaluation before the first step is not a training step (as in History.add).
            if ev["step"] > 0 or ev.get("val_loss") is None:
                self.steps.append(ev["step"])
                self.loss.append(ev["loss"])
                self.lr.append(ev["lr"])
                self.elapsed.append(ev.get("elapsed", math.nan))
            if ev.get("val_loss") is not None:
                self.eval_steps.append(ev["step"])
                self.eval_train.append(ev.get("eval_train_loss") or math.nan)
                self.eval_val.append(ev["val_loss"])
                self.eval_elapsed.append(ev.get("elapsed", math.nan))
            if ev.get("heads") is not None:
                self.head_steps.append(ev["step"])
                self.head_scores.append(ev["heads"])
        self.dirty = True

    def train_points(self, axis: str) -> tuple[list[float], list[float]]:
        """Every step's train loss as (xs, ys) along `axis` (a key of AXES)."""
        return self._along(axis, self.steps, self.elapsed, self.loss)

    def val_points(self, axis: str) -> tuple[list[float], list[float]]:
        """Every evaluation's val loss as (xs, ys) along `axis`."""
        return self._along(axis, self.eval_steps, self.eval_elapsed, self.eval_val)

    def _along(
        self, axis: str, steps: list[int], elapsed: list[float], ys: list[float]
    ) -> tuple[list[float], list[float]]:
        if axis == "time":  # only the points whose time is known
            pairs = [(t, y) for t, y in zip(elapsed, ys, strict=True) if math.isfinite(t)]
        elif axis == "tokens":
            pairs = [(s * self.tokens_per_step, y) for s, y in zip(steps, ys, strict=True)]
        else:
            pairs = list(zip(steps, ys, strict=True))
        return [x for x, _ in pairs], [y for _, y in pairs]

    def history(self) -> dict:
        """The curve so far, in trainer.History's dict form."""
        return {
            "steps": self.steps,
            "loss": self.loss,
            "lr": self.lr,
            "eval_steps": self.eval_steps,
            "eval_train": self.eval_train,
            "eval_val": self.eval_val,
            "head_steps": self.head_steps,
            "head_scores": self.head_scores,
            "val_bytes_per_token": self.val_bytes_per_token,
        }

    def epoch(self, step: int) -> float | None:
        """Passes over the training split that `step` steps make (tokens trained / train tokens); None if unknown."""
        if not self.tokens_per_step or not self.train_tokens:
            return None
        return step * self.tokens_per_step / self.train_tokens

    def best_val(self) -> tuple[int, float] | None:
        """(step, val loss) of the best evaluation so far (probes.hints.best_eval)."""
        return best_eval(self.eval_steps, self.eval_val)

    def best_point(self, axis: str) -> tuple[float, float] | None:
        """The best evaluation as one (x, y) along `axis`, if it has a place there."""
        best = self.best_val()
        if best is None:
            return None
        i = self.eval_steps.index(best[0])
        xs, ys = self._along(axis, [best[0]], [self.eval_elapsed[i]], [best[1]])
        return (xs[0], ys[0]) if xs else None

    def val_bpb(self) -> float | None:
        """The latest val loss in bits per byte of the validation text (trainer.Trainer.bits_per_byte)."""
        if not self.eval_val or not self.val_bytes_per_token:
            return None
        return self.eval_val[-1] / math.log(2) / self.val_bytes_per_token
