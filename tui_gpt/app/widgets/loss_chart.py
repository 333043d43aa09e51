"""The loss chart: a plotext plot of a `Curve`. Imported after the first paint (plotext is slow to load)."""

from __future__ import annotations

import math

from textual.color import Color
from textual_plotext import PlotextPlot

from tui_gpt.app.widgets.curve import LINE_COLOURS, Curve


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
    """Train loss per step, val loss per evaluation, and reference lines at the baselines."""

    def __init__(self, curve: Curve, **kwargs) -> None:
        super().__init__(**kwargs)
        self.curve = curve

    def _colours(self) -> dict[str, tuple[int, int, int]]:
        variables = self.app.get_css_variables()
        background = Color.parse(variables.get("background", "#000000"))
        colours = {}
        for line, name in LINE_COLOURS.items():
            colour = Color.parse(variables[name])
            colours[line] = background.blend(colour, colour.a).rgb  # plotext takes plain RGB: no alpha
        return colours

    def on_resize(self) -> None:
        self.curve.dirty = True  # the points are downsampled to the width: draw again at the new one

    def redraw(self) -> None:
        c = self.curve
        plt = self.plt
        plt.clear_data()
        plt.clear_figure()
        plt.title("")
        plt.xlabel("step")
        colour = self._colours()
        finite = [v for v in c.loss if math.isfinite(v)]
        if c.baselines:
            hi = c.baselines["uniform"]
            plt.ylim(0, max(hi, *(finite[:1] or [hi])) * 1.05)
            plt.hline(c.baselines["uniform"], colour["uniform"])
            plt.hline(c.baselines["bigram"], colour["bigram"])
        if c.steps:
            xs, ys = downsample(c.steps, c.loss, max(20, self.size.width - 10))
            plt.plot(xs, ys, color=colour["train"], marker="braille")  # the legend is a line below the chart
        if c.eval_steps:
            plt.plot(c.eval_steps, c.eval_val, color=colour["val"], marker="braille")
        self.refresh()
