"""The training-examples pane: a text broken into prefix -> target rows, and their mean loss."""

from __future__ import annotations

import math

from rich.text import Text
from textual.app import ComposeResult
from textual.containers import Vertical
from textual.widgets import DataTable, Static

from tui_gpt.tokenizer import visible

PREFIX_W = 28


class ExamplesPane(Vertical):
    """Every prefix of the text is a training example whose target is the next token."""

    def compose(self) -> ComposeResult:
        table = DataTable(cursor_type="row", zebra_stripes=True, id="examples-table")
        table.add_column("prefix", key="prefix")
        table.add_column("→ target", key="target")
        table.add_column("p", key="p")
        table.add_column("-log p", key="nll")
        table.add_column("rank", key="rank")
        yield table
        yield Static("", id="examples-mean")

    def show(self, source: str, labels: list[str], rows: list, loss: float) -> None:
        """`labels` are the token texts; `rows` are probe.Example for positions 1..T-1."""
        self.border_title = f"Training examples · {source}"
        table = self.query_one(DataTable)
        table.clear()
        for r in rows:
            prefix = "".join(labels[: r.position])
            shown = visible(prefix)
            if len(shown) > PREFIX_W:
                shown = "…" + shown[-(PREFIX_W - 1) :]
            table.add_row(
                shown,
                Text(visible(labels[r.position]), style="bold"),
                f"{r.prob:.3f}",
                f"{r.nll:.2f}",
                str(r.rank),
            )
        mean = self.query_one("#examples-mean", Static)
        if rows and not math.isnan(loss):
            mean.update(
                f"{len(rows)} examples · mean -log p = [b]{loss:.3f}[/b] "
                "← the loss: cross-entropy of the true next token"
            )
        else:
            mean.update("type at least two tokens: each prefix predicts the next token")
