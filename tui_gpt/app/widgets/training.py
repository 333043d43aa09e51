"""The training pane: the live loss chart with baselines, the run's numbers and the corpus."""

from __future__ import annotations

import math

from textual.app import ComposeResult
from textual.containers import Vertical
from textual.widgets import Sparkline
from textual_plotext import PlotextPlot

from tui_gpt.app.widgets.line import InfoLine


def downsample(xs: list[int], ys: list[float], n: int) -> tuple[list[int], list[float]]:
    """At most about `n` points, each the mean of its bucket, so the chart stays cheap."""
    if len(xs) <= n or n <= 0:
        return xs, ys
    size = math.ceil(len(xs) / n)
    out_x, out_y = [], []
    for i in range(0, len(xs), size):
        chunk = [y for y in ys[i : i + size] if not math.isnan(y)]
        if chunk:
            out_x.append(xs[min(i + size, len(xs)) - 1])
            out_y.append(sum(chunk) / len(chunk))
    return out_x, out_y


class LossChart(PlotextPlot):
    """Train loss per step, val loss per evaluation, and reference lines."""

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self.steps: list[int] = []
        self.loss: list[float] = []
        self.lr: list[float] = []
        self.eval_steps: list[int] = []
        self.eval_train: list[float] = []
        self.eval_val: list[float] = []
        self.baselines: dict[str, float] = {}
        self.dirty = True

    def set_history(self, history: dict) -> None:
        self.steps = list(history.get("steps", []))
        self.loss = list(history.get("loss", []))
        self.lr = list(history.get("lr", []))
        self.eval_steps = list(history.get("eval_steps", []))
        self.eval_train = list(history.get("eval_train", []))
        self.eval_val = list(history.get("eval_val", []))
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
        }

    def add(self, events: list[dict]) -> None:
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

    def redraw(self) -> None:
        if not self.dirty:
            return
        self.dirty = False
        plt = self.plt
        plt.clear_data()
        plt.clear_figure()
        plt.title("")
        plt.xlabel("step")
        finite = [v for v in self.loss if math.isfinite(v)]
        if self.baselines:
            hi = self.baselines["uniform"]
            ymax = max(hi, *(finite[:1] or [hi])) * 1.05
            plt.ylim(0, ymax)
            plt.hline(self.baselines["uniform"], "gray")
            plt.hline(self.baselines["bigram"], "orange")
        if self.steps:
            xs, ys = downsample(self.steps, self.loss, max(20, self.size.width - 10))
            plt.plot(xs, ys, color="cyan", marker="braille")  # the legend is a line below the chart
        if self.eval_steps:
            plt.plot(self.eval_steps, self.eval_val, color="magenta", marker="braille")
        self.refresh()


class TrainingPane(Vertical):
    def compose(self) -> ComposeResult:
        yield LossChart(id="loss-chart")
        yield InfoLine(id="legend")
        yield InfoLine(id="train-stats")
        yield InfoLine(id="hints")
        yield InfoLine(id="pinned")
        yield Sparkline([], id="pinned-chart")
        yield InfoLine(id="corpus-info")

    def set_baselines(self, baselines: dict[str, float]) -> None:
        chart = self.query_one(LossChart)
        chart.baselines = baselines
        chart.dirty = True
        self.query_one("#legend", InfoLine).text = (
            f"[cyan]━ train[/] [magenta]━ val[/] [gray]─ uniform ln V = {baselines['uniform']:.2f}[/]"
            f" [orange1]─ bigram {baselines['bigram']:.2f}[/] · unigram {baselines['unigram']:.2f}"
        )

    def set_stats(self, text: str) -> None:
        self.query_one("#train-stats", InfoLine).text = text

    def set_corpus(self, text: str) -> None:
        self.query_one("#corpus-info", InfoLine).text = text
