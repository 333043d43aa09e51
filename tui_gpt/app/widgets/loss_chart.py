"""The loss chart: a plotext plot of a `Curve`. Imported after the first paint (plotext is slow to load)."""

from __future__ import annotations

import math
from bisect import bisect_right

from textual.color import Color
from textual_plotext import PlotextPlot

from tui_gpt.app.widgets.curve import AXES, BEST_MARKER, LINE_COLOURS, Curve
from tui_gpt.app.widgets.overlay_lines import OVERLAY_COLOURS, OverlayLine


def theme_rgb(variables: dict[str, str], names: dict[str, str]) -> dict[str, tuple[int, int, int]]:
    """Each line's theme variable as the RGB plotext takes (no alpha: blended onto the background)."""
    background = Color.parse(variables.get("background", "#000000"))
    colours = {}
    for line, name in names.items():
        colour = Color.parse(variables[name])
        colours[line] = background.blend(colour, colour.a).rgb
    return colours


FAINT = 0.6  # an earlier run's line: 60% its colour, 40% the background
BAND = 0.3  # a seed group's min-max band: fainter still


def downsample(xs: list[float], ys: list[float], n: int) -> tuple[list[float], list[float]]:
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


def band_path(xs: list[float], lo: list[float], hi: list[float], n: int) -> tuple[list[float], list[float]]:
    """A zigzag from `lo` up to `hi` and down again at `n` even steps along xs: drawn as one braille line,
    it fills the band (plotext fills only down to a level, not between two lines)."""
    px: list[float] = []
    py: list[float] = []
    if len(xs) < 2 or n < 2:
        return [*xs, *xs], [*lo, *hi]
    for i in range(n):
        x = xs[0] + (xs[-1] - xs[0]) * i / (n - 1)
        j = min(max(bisect_right(xs, x), 1), len(xs) - 1)
        span = xs[j] - xs[j - 1]
        t = (x - xs[j - 1]) / span if span > 0 else 0.0
        a, b = (lo[j - 1] + t * (lo[j] - lo[j - 1]), hi[j - 1] + t * (hi[j] - hi[j - 1]))
        px += [x, x]
        py += [a, b] if i % 2 == 0 else [b, a]
    return px, py


class LossChart(PlotextPlot):
    """Train loss per step, val loss per evaluation, reference lines at the baselines, and earlier runs faintly."""

    def __init__(self, curve: Curve, **kwargs) -> None:
        super().__init__(**kwargs)
        self.curve = curve

    def _colours(self) -> dict[str, tuple[int, int, int]]:
        variables = self.app.get_css_variables()
        background = Color.parse(variables.get("background", "#000000"))
        colours = theme_rgb(variables, LINE_COLOURS)
        for name in OVERLAY_COLOURS:
            colour = Color.parse(variables[name])
            colours[name] = background.blend(colour, FAINT * colour.a).rgb
            colours[f"{name}-band"] = background.blend(colour, BAND * colour.a).rgb
        return colours

    def on_resize(self) -> None:
        self.curve.dirty = True  # the points are downsampled to the width: draw again at the new one

    def redraw(self) -> None:
        c = self.curve
        plt = self.plt
        plt.clear_data()
        plt.clear_figure()
        plt.title("")
        plt.xlabel(AXES[c.axis])
        colour = self._colours()
        finite = [v for v in c.loss if math.isfinite(v)]
        if c.baselines:
            hi = c.baselines["uniform"]
            plt.ylim(0, max(hi, *(finite[:1] or [hi])) * 1.05)
            plt.hline(c.baselines["uniform"], colour["uniform"])
            plt.hline(c.baselines["bigram"], colour["bigram"])
        for line in c.overlays:  # beneath the live run
            self._overlay(line, colour)
        xs, ys = c.train_points(c.axis)
        if xs:
            xs, ys = downsample(xs, ys, max(20, self.size.width - 10))
            plt.plot(xs, ys, color=colour["train"], marker="braille")  # the legend is a line below the chart
        xs, ys = c.val_points(c.axis)
        if xs:
            plt.plot(xs, ys, color=colour["val"], marker="braille")
        if best := c.best_point(c.axis):  # over the val line: where it was lowest
            plt.scatter([best[0]], [best[1]], color=colour["val"], marker=BEST_MARKER)
        self.refresh()

    def _overlay(self, line: OverlayLine, colour: dict[str, tuple[int, int, int]]) -> None:
        if line.lo:
            px, py = band_path(line.xs, line.lo, line.hi, 2 * max(20, self.size.width))  # two braille dots a cell
            self.plt.plot(px, py, color=colour[f"{line.colour}-band"], marker="braille")
        self.plt.plot(line.xs, line.ys, color=colour[line.colour], marker="braille")
