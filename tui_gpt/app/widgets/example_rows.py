"""The training-examples table: a text broken into prefix -> target rows, drawn line by line."""

from __future__ import annotations

from typing import Any

from rich.segment import Segment
from rich.style import Style
from textual.reactive import reactive
from textual.strip import Strip
from textual.widget import Widget

from tui_gpt.visible import visible

PREFIX_W = 30  # at most; less in a narrow pane
COLUMNS_W = 2 + 10 + 7 + 8 + 6  # gap, target, p, -log p, rank


class ExampleRows(Widget):
    """The rows as a fixed-width table; the latest rows when they do not all fit.

    Drawn line by line (the Line API): the columns keep their padding exactly.
    """

    COMPONENT_CLASSES = {"examples--header", "examples--target"}

    rows: reactive[list] = reactive(list, always_update=True, layout=False)
    words: reactive[list | None] = reactive(None, always_update=True, layout=False)  # word rows, when shown

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.labels: list[str] = []

    def _cells(self, row: Any, w: int) -> tuple[str, str, str]:
        """Prefix, target and numbers of one row: a token example (probe.Example) or a word one."""
        if self.words is not None:
            prefix, target = visible(row.prefix), visible(row.word)
            numbers = f"{row.prob:7.3f}{row.nll:8.2f}{row.tokens:6d}"
        else:
            prefix = visible("".join(self.labels[: row.position]))
            target = visible(self.labels[row.position])
            numbers = f"{row.prob:7.3f}{row.nll:8.2f}{row.rank:6d}"
        if len(prefix) > w:
            prefix = "…" + prefix[-(w - 1) :]
        return prefix, target, numbers

    def render_line(self, y: int) -> Strip:
        width = self.size.width
        w = max(8, min(PREFIX_W, width - COLUMNS_W))
        by_word = self.words is not None
        rows = self.words if self.words is not None else self.rows
        room = max(1, self.size.height - 1)
        hidden = 0
        if len(rows) > room:
            shown = rows[-(room - 1) :] if room > 1 else rows[-1:]
            hidden = len(rows) - len(shown)
            rows = shown
        if y == 0:
            header = f"{'prefix':>{w}}  {'→ target':<10}{'p':>7}{'-log p':>8}{'rank':>6}"
            if by_word:
                header = f"{'prefix':>{w}}  {'→ word':<10}{'p':>7}{'-log p':>8}{'tok':>6}"
            segments = [Segment(header, self.get_component_rich_style("examples--header"))]
        elif hidden and y == 1:
            segments = [Segment(f"{'… ' + str(hidden) + ' earlier rows':>{w}}", Style(dim=True))]
        elif 0 <= (i := y - 1 - (1 if hidden else 0)) < len(rows):
            prefix, target, numbers = self._cells(rows[i], w)
            style = self.get_component_rich_style("examples--target")
            segments = [Segment(f"{prefix:>{w}}  "), Segment(f"{target:<10}", style), Segment(numbers)]
        else:
            segments = []
        # The widget's colours under every segment, so unstyled text follows the theme.
        return Strip(segments).apply_style(self.rich_style).crop_extend(0, width, self.rich_style)
