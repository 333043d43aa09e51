"""The loss curve the app has received so far: plain data that the chart and the hints read."""

from __future__ import annotations

import math

# Theme variables for the chart's lines; the legend under the chart uses the same.
LINE_COLOURS = {"train": "primary", "val": "success", "uniform": "foreground-muted", "bigram": "warning"}


class Curve:
    """Every step's train loss and every evaluation, in trainer.History's shape."""

    def __init__(self) -> None:
        self.baselines: dict[str, float] = {}
        self.set_history({})

    def set_history(self, history: dict) -> None:
        self.steps: list[int] = list(history.get("steps", []))
        self.loss: list[float] = list(history.get("loss", []))
        self.lr: list[float] = list(history.get("lr", []))
        self.eval_steps: list[int] = list(history.get("eval_steps", []))
        self.eval_train: list[float] = list(history.get("eval_train", []))
        self.eval_val: list[float] = list(history.get("eval_val", []))
        self.val_bytes_per_token: float | None = history.get("val_bytes_per_token")
        self.dirty = True

    def add(self, events: list[dict]) -> None:
        """Append a batch of TrainEvent dicts."""
        for ev in events:
            # The evaluation before the first step is not a training step (as in History.add).
            if ev["step"] > 0 or ev.get("val_loss") is None:
                self.steps.append(ev["step"])
                self.loss.append(ev["loss"])
                self.lr.append(ev["lr"])
            if ev.get("val_loss") is not None:
                self.eval_steps.append(ev["step"])
                self.eval_train.append(ev.get("eval_train_loss") or math.nan)
                self.eval_val.append(ev["val_loss"])
        self.dirty = True

    def history(self) -> dict:
        """The curve so far, in trainer.History's dict form."""
        return {
            "steps": self.steps,
            "loss": self.loss,
            "lr": self.lr,
            "eval_steps": self.eval_steps,
            "eval_train": self.eval_train,
            "eval_val": self.eval_val,
            "val_bytes_per_token": self.val_bytes_per_token,
        }

    def val_bpb(self) -> float | None:
        """The latest val loss in bits per byte of the validation text (trainer.Trainer.bits_per_byte)."""
        if not self.eval_val or not self.val_bytes_per_token:
            return None
        return self.eval_val[-1] / math.log(2) / self.val_bytes_per_token
