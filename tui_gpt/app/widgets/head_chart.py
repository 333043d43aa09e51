"""The head scores over training: the best induction score (left axis, 0..1) and the in-context scores (right
axis, nats), with a vertical line at the phase change. A plotext plot: imported when the heads view opens."""

from __future__ import annotations

from collections.abc import Sequence

from textual_plotext import PlotextPlot

from tui_gpt.app.widgets.curve import HEAD_COLOURS
from tui_gpt.app.widgets.loss_chart import downsample, theme_rgb

PHASE_LABEL = "phase change"


class HeadChart(PlotextPlot):
    """One point per reading of the head scores; `show` hands it the series, `redraw` draws them."""

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self.steps: list[int] = []
        self.best: list[float] = []  # the best head's induction score at each reading
        self.icl: list[float] = []  # the repeat probe's second-half loss minus its first (nats)
        self.in_context: list[tuple[int, float]] = []  # (step, nats) where the val text measured it
        self.mark: int | None = None  # the phase change's step

    def show(
        self,
        steps: Sequence[int],
        best: Sequence[float],
        icl: Sequence[float],
        in_context: Sequence[tuple[int, float]],
        mark: int | None,
    ) -> None:
        self.steps, self.best, self.icl = list(steps), list(best), list(icl)
        self.in_context, self.mark = list(in_context), mark
        self.redraw()

    def _colours(self) -> dict[str, tuple[int, int, int]]:
        return theme_rgb(self.app.get_css_variables(), HEAD_COLOURS)

    def on_resize(self) -> None:
        self.redraw()  # the points are downsampled to the width: draw again at the new one

    def redraw(self) -> None:
        plt = self.plt
        plt.clear_data()
        plt.clear_figure()
        plt.title("")
        plt.xlabel("step")
        colour = self._colours()
        plt.ylim(0, 1)  # attention weights: the induction score's whole range
        width = max(20, self.size.width - 10)  # about a point per column: a long run stays cheap to draw
        if self.steps:
            xs = [float(s) for s in self.steps]
            plt.plot(*downsample(xs, self.best, width), color=colour["induction"], marker="braille")
            plt.plot(*downsample(xs, self.icl, width), color=colour["icl"], marker="braille", yside="right")
        if self.in_context:
            xs, ys = [float(s) for s, _ in self.in_context], [v for _, v in self.in_context]
            plt.plot(*downsample(xs, ys, width), color=colour["in_context"], marker="braille", yside="right")
        if self.mark is not None:
            plt.vline(self.mark, colour["phase"])
            plt.text(PHASE_LABEL, self.mark, 0.97, color=colour["phase"], alignment="left")
        self.refresh()
