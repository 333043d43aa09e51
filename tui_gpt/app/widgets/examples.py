"""The training-examples pane: a text broken into prefix -> target rows, and their mean loss."""

from __future__ import annotations

import math

from rich.segment import Segment
from rich.style import Style
from textual.app import ComposeResult
from textual.containers import Vertical
from textual.reactive import reactive
from textual.strip import Strip
from textual.widget import Widget

from tui_gpt.app.widgets.line import InfoLine
from tui_gpt.visible import visible

PREFIX_W = 30  # at most; less in a narrow pane
COLUMNS_W = 2 + 10 + 7 + 8 + 6  # gap, target, p, -log p, rank


class ExampleRows(Widget):
    """The rows as a fixed-width table; the latest rows when they do not all fit.

    Drawn line by line (the Line API): the columns keep their padding exactly.
    """

    COMPONENT_CLASSES = {"examples--header", "examples--target"}

    rows: reactive[list] = reactive(list, always_update=True, layout=False)

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self.labels: list[str] = []

    def render_line(self, y: int) -> Strip:
        width = self.size.width
        w = max(8, min(PREFIX_W, width - COLUMNS_W))
        rows = self.rows
        room = max(1, self.size.height - 1)
        hidden = 0
        if len(rows) > room:
            shown = rows[-(room - 1) :] if room > 1 else rows[-1:]
            hidden = len(rows) - len(shown)
            rows = shown
        if y == 0:
            header = f"{'prefix':>{w}}  {'→ target':<10}{'p':>7}{'-log p':>8}{'rank':>6}"
            segments = [Segment(header, self.get_component_rich_style("examples--header"))]
        elif hidden and y == 1:
            segments = [Segment(f"{'… ' + str(hidden) + ' earlier rows':>{w}}", Style(dim=True))]
        elif 0 <= (i := y - 1 - (1 if hidden else 0)) < len(rows):
            r = rows[i]
            prefix = visible("".join(self.labels[: r.position]))
            if len(prefix) > w:
                prefix = "…" + prefix[-(w - 1) :]
            target = self.get_component_rich_style("examples--target")
            segments = [
                Segment(f"{prefix:>{w}}  "),
                Segment(f"{visible(self.labels[r.position]):<10}", target),
                Segment(f"{r.prob:7.3f}{r.nll:8.2f}{r.rank:6d}"),
            ]
        else:
            segments = []
        # The widget's colours under every segment, so unstyled text follows the theme.
        return Strip(segments).apply_style(self.rich_style).crop_extend(0, width, self.rich_style)


class ExamplesPane(Vertical):
    """Every prefix of the text is a training example whose target is the next token."""

    def compose(self) -> ComposeResult:
        yield ExampleRows(id="examples-rows")
        yield InfoLine(id="examples-mean")

    def show(self, source: str, labels: list[str], rows: list, loss: float) -> None:
        """`labels` are the token texts; `rows` are probe.Example for positions 1..T-1."""
        self.border_title = f"Training examples · {source}"
        table = self.query_one(ExampleRows)
        table.labels = labels
        table.rows = rows
        mean = self.query_one("#examples-mean", InfoLine)
        if rows and not math.isnan(loss):
            mean.text = (
                f"{len(rows)} examples · mean -log p = [b]{loss:.3f}[/b] "
                "= the loss: cross-entropy of the true next token"
            )
        else:
            mean.text = "type at least two tokens: each prefix predicts the next token"
