"""The training-examples pane: a text broken into prefix -> target rows, and their mean loss."""

from __future__ import annotations

import math
from typing import Any

from textual.app import ComposeResult
from textual.containers import Vertical

from tui_gpt.app.widgets.example_rows import ExampleRows
from tui_gpt.app.widgets.line import InfoLine


class ExamplesPane(Vertical):
    """Every prefix of the text is a training example whose target is the next token."""

    def compose(self) -> ComposeResult:
        yield ExampleRows(id="examples-rows")
        yield InfoLine(id="examples-mean")

    def show(self, source: str, labels: list[str], rows: list, loss: float, words: Any = None) -> None:
        """`labels` are the token texts; `rows` are probe.Example for positions 1..T-1.

        With `words` (a nextword.WordExamples) the table shows one row per word instead.
        """
        self.border_title = f"Training examples · {source}" + (" · by word" if words is not None else "")
        table = self.query_one(ExampleRows)
        table.labels = labels
        table.rows = rows
        table.words = words.rows if words is not None else None
        mean = self.query_one("#examples-mean", InfoLine)
        if words is not None and words.rows:
            n = len(words.rows)
            mean.text = (
                f"{n} words · -log p(word) is the sum of its tokens' losses · loss per word "
                f"[b]{words.loss_per_word:.3f}[/b] = loss per token {words.loss_per_token:.3f} "
                f"× {words.n_tokens / n:.2f} tokens per word"
            )
            return
        if rows and not math.isnan(loss):
            mean.text = (
                f"{len(rows)} examples · mean -log p = [b]{loss:.3f}[/b] "
                "= the loss: cross-entropy of the true next token"
            )
        else:
            mean.text = "type at least two tokens: each prefix predicts the next token"
