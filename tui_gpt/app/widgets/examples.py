"""The training-examples pane: a text broken into prefix -> target rows, and their mean loss."""

from __future__ import annotations

import math

from rich.text import Text
from textual.app import ComposeResult
from textual.containers import Vertical
from textual.reactive import reactive
from textual.widget import Widget

from tui_gpt.app.widgets.line import InfoLine
from tui_gpt.tokenizer import visible

PREFIX_W = 30


class ExampleRows(Widget):
    """The rows as a fixed-width table; the latest rows when they do not all fit."""

    COMPONENT_CLASSES = {"examples--header", "examples--target"}

    rows: reactive[list] = reactive(list, always_update=True, layout=False)

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self.labels: list[str] = []

    def render(self) -> Text:
        header = self.get_component_rich_style("examples--header")
        target = self.get_component_rich_style("examples--target")
        out = Text(no_wrap=True, overflow="ellipsis")
        out.append(f"{'prefix':>{PREFIX_W}}  {'→ target':<10}{'p':>7}{'-log p':>8}{'rank':>6}\n", style=header)
        rows = self.rows
        room = max(1, self.size.height - 1)
        if len(rows) > room:
            rows = rows[-(room - 1) :] if room > 1 else rows[-1:]
            out.append(f"{'… ' + str(len(self.rows) - len(rows)) + ' earlier rows':>{PREFIX_W}}\n", style="dim")
        for r in rows:
            prefix = visible("".join(self.labels[: r.position]))
            if len(prefix) > PREFIX_W:
                prefix = "…" + prefix[-(PREFIX_W - 1) :]
            out.append(f"{prefix:>{PREFIX_W}}  ")
            out.append(f"{visible(self.labels[r.position]):<10}", style=target)
            out.append(f"{r.prob:7.3f}{r.nll:8.2f}{r.rank:6d}\n")
        out.rstrip()
        return out


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
