"""One head score per cell: a layers x heads table, each cell shaded from the background to a theme colour
by its score (0..1) and holding the number. The heads view draws the induction and previous-token scores so.

A narrow terminal gets narrower cells with shorter numbers ("0.62", ".62", ".6"), never a crash.
"""

from __future__ import annotations

from collections.abc import Sequence

from rich.style import Style
from rich.text import Text
from textual.color import Color
from textual.widget import Widget

WIDEST = 7  # a cell's width, in characters, when there is room: "head 1 " over " 0.62  "


def cell_text(score: float, width: int) -> str:
    """`score` as the longest of "0.62", ".62", ".6", "1" that fits `width`, centred in it."""
    for text in (f"{score:.2f}", f"{score:.2f}".removeprefix("0"), f"{score:.1f}".removeprefix("0"), f"{score:.0f}"):
        if len(text) <= width:
            return text.center(width)
    return " " * width


class HeadGrid(Widget):
    """A (n_layer, n_head) table of scores 0..1; layers are rows ("layer 1" at the top), heads columns."""

    def __init__(self, title: str, colour: str, **kwargs) -> None:
        super().__init__(**kwargs)
        self.title = title
        self.colour = colour  # a theme variable: the shade of a score of 1
        self.table: list[list[float]] = []
        self.best: tuple[int, int] | None = None  # (layer, head) from 1, drawn bold and underlined

    def show(self, table: Sequence[Sequence[float]], best: tuple[int, int] | None = None) -> None:
        self.table = [list(row) for row in table]
        self.best = best
        self.refresh(layout=True)  # a new model may have more layers: the height follows

    def render(self) -> Text:
        text = Text(self.title, style="bold", no_wrap=True, overflow="ellipsis")
        if not self.table or not self.table[0]:
            return text
        n_layer, n_head = len(self.table), len(self.table[0])
        label_w = len(f"layer {n_layer} ")
        cell = max(2, min(WIDEST, (self.size.width - label_w) // n_head))
        _, background = self.background_colors
        full = Color.parse(self.app.get_css_variables()[self.colour])
        text.append("\n" + " " * label_w, style="dim")
        for h in range(n_head):
            name = f"head {h + 1}" if cell >= len(f"head {h + 1}") + 1 else f"h{h + 1}" if cell >= 3 else str(h + 1)
            text.append(name.center(cell)[:cell], style="dim")
        for li, row in enumerate(self.table):
            text.append("\n" + f"layer {li + 1}".ljust(label_w), style="bold")
            for hi, score in enumerate(row):
                shade = background.blend(full, min(1.0, max(0.0, score)) * full.a)
                style = Style(bgcolor=shade.rich_color, color=shade.get_contrast_text(1.0).rich_color)
                if self.best == (li + 1, hi + 1):
                    style += Style(bold=True, underline=True)
                text.append(cell_text(score, cell), style=style)
        return text
