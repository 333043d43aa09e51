"""The attention pane: the causal mask and each head's weights as a heatmap with token labels.

A Line-API widget: rows are cached `Strip`s, so a repaint costs about a millisecond.
"""

from __future__ import annotations

from typing import Any

from rich.color import Color
from rich.segment import Segment
from rich.style import Style
from textual.reactive import reactive
from textual.strip import Strip
from textual.widget import Widget

from tui_gpt.app import keymap
from tui_gpt.visible import visible

# Viridis: perceptually uniform and readable with the common colour-vision deficiencies.
RAMP = [(68, 1, 84), (59, 82, 139), (33, 145, 140), (94, 201, 98), (253, 231, 37)]
LABEL_W = 8
MODES = ("head", "heads", "mask")


LEVELS = 32


def ramp(w: float) -> Color:
    w = min(1.0, max(0.0, w)) * (len(RAMP) - 1)
    i = min(int(w), len(RAMP) - 2)
    f = w - i
    a, b = RAMP[i], RAMP[i + 1]
    return Color.from_rgb(*(round(x + (y - x) * f) for x, y in zip(a, b, strict=True)))


# One style per shade, built once: cells index into it by sqrt(weight), which spreads out
# the many small weights.
SHADES = [Style(bgcolor=ramp(i / (LEVELS - 1))) for i in range(LEVELS)]


def shade(w: float) -> Style:
    return SHADES[min(LEVELS - 1, max(0, round(w**0.5 * (LEVELS - 1))))]


class AttentionMap(Widget, can_focus=True):
    """Rows are queries (the position predicting), columns are keys (the positions it reads)."""

    BINDINGS = keymap.bindings_of(keymap.ATTENTION)

    # Not "layer": Widget.layer is Textual's CSS layer.
    layer_index: reactive[int] = reactive(0)
    head_index: reactive[int] = reactive(0)
    mode: reactive[str] = reactive("head")

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self.labels: list[str] = []
        # (n_layer, n_head, T, T) tensor, or None; Any: the app does not import torch (pyproject's import contracts)
        self.weights: Any = None
        self.causal = True
        self.dropped = 0
        self._strips: list[Strip] = []

    # ---- data in ---------------------------------------------------------
    def show(self, labels: list[str], weights, causal: bool, dropped: int = 0) -> None:
        self.labels, self.weights, self.causal, self.dropped = labels, weights, causal, dropped
        # A reset may have brought a model with fewer layers or heads.
        if self.layer_index >= max(1, self.n_layer):
            self.set_reactive(AttentionMap.layer_index, 0)
        if self.head_index >= max(1, self.n_head):
            self.set_reactive(AttentionMap.head_index, 0)
        self._rebuild()

    @property
    def n_layer(self) -> int:
        return 0 if self.weights is None else self.weights.shape[0]

    @property
    def n_head(self) -> int:
        return 0 if self.weights is None else self.weights.shape[1]

    def action_layer(self, delta: int) -> None:
        if self.n_layer:
            self.layer_index = (self.layer_index + delta) % self.n_layer

    def action_head(self, delta: int) -> None:
        if self.n_head:
            self.head_index = (self.head_index + delta) % self.n_head

    def action_mode(self) -> None:
        self.mode = MODES[(MODES.index(self.mode) + 1) % len(MODES)]

    def watch_layer_index(self) -> None:
        self._rebuild()

    def watch_head_index(self) -> None:
        self._rebuild()

    def watch_mode(self) -> None:
        self._rebuild()

    def on_resize(self) -> None:
        self._rebuild()

    # ---- drawing ---------------------------------------------------------
    def _title(self) -> str:
        if self.mode == "mask":
            return "Attention · causal mask" + ("" if self.causal else " (OFF)")
        if self.weights is None:
            return "Attention"
        if self.mode == "heads":
            return f"Attention · layer {self.layer_index + 1}/{self.n_layer} · all heads"
        return f"Attention · layer {self.layer_index + 1}/{self.n_layer} · head {self.head_index + 1}/{self.n_head}"

    def _rebuild(self) -> None:
        self.border_title = self._title()
        width, height = self.size.width, self.size.height
        dim = Style(dim=True)
        strips: list[Strip] = []
        T = len(self.labels)
        if not T or width < LABEL_W + 4 or height < 3:
            msg = "type a prompt to see attention" if not T else "too small"
            strips.append(Strip([Segment(msg, dim)]))
        elif self.mode == "heads" and self.weights is not None:
            strips = self._heads(width, height)
        else:
            strips = self._matrix(width, height)
        self._strips = strips
        self.refresh()

    def _visible_span(self, cols: int, rows: int, cell: int) -> int:
        return max(1, min(len(self.labels), rows, cols // cell))

    def _matrix(self, width: int, height: int) -> list[Strip]:
        """One head (or the mask) as a square matrix, 2 characters per cell."""
        n = self._visible_span(width - LABEL_W - 1, height - 2, 2)
        T = len(self.labels)
        first = T - n  # show the most recent tokens when they do not all fit
        dim = Style(dim=True)
        w = None
        if self.mode == "head" and self.weights is not None:
            w = self.weights[self.layer_index, self.head_index].tolist()
        head = [Segment(" " * (LABEL_W + 1))]
        for j in range(first, T):
            head.append(Segment(f"{visible(self.labels[j])[:1]:<2}", Style(bold=True)))
        note = f"  keys →  (last {n} of {T})" if n < T else "  keys →"
        strips = [Strip([Segment(f"{'query ↓':<{LABEL_W + 1}}", dim), Segment(note, dim)]), Strip(head)]
        for i in range(first, T):
            segs = [Segment(f"{visible(self.labels[i])[-LABEL_W:]:>{LABEL_W}} ", Style(bold=True))]
            for j in range(first, T):
                masked = self.causal and j > i
                if masked:
                    segs.append(Segment("··", dim))
                elif w is None:
                    segs.append(Segment("██", Style(color=ramp(0.75))))
                else:
                    segs.append(Segment("  ", shade(w[i][j])))
            strips.append(Strip(segs))
        return strips

    def _heads(self, width: int, height: int) -> list[Strip]:
        """Every head of the layer side by side, one character per cell."""
        H = self.n_head
        T = len(self.labels)
        n = max(1, min(T, height - 2, (width - 2 * H) // H))
        first = T - n
        dim = Style(dim=True)
        strips = [Strip([Segment("".join(f"head {h + 1:<{n - 4}}"[: n + 2] for h in range(H)), dim)])]
        rows = self.weights[self.layer_index].tolist()  # (nh, T, T) as lists: fast to index
        for i in range(first, T):
            segs: list[Segment] = []
            for h in range(H):
                row = rows[h][i]
                for j in range(first, T):
                    if self.causal and j > i:
                        segs.append(Segment("·", dim))
                    else:
                        segs.append(Segment(" ", shade(row[j])))
                segs.append(Segment("  "))
            strips.append(Strip(segs))
        return strips

    def render_line(self, y: int) -> Strip:
        if y < len(self._strips):
            # The widget's colours under every segment, so labels and masked cells follow the theme.
            return self._strips[y].apply_style(self.rich_style).crop_extend(0, self.size.width, self.rich_style)
        return Strip.blank(self.size.width, self.rich_style)
