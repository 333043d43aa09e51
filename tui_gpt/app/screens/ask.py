"""A modal dialog that asks for one line of text, and `check_path`, a check for it.

The question and the error are shown as plain text (markup=False): they name files and the user's own
text, and a file called "data[v2].txt" is never read as markup.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from textual.app import ComposeResult
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import Input, Label

from tui_gpt.app import keymap
from tui_gpt.settings import is_builtin


class AskScreen(ModalScreen[str | None]):
    """Ask for one line of text; `check` returns an error message, or None to accept."""

    BINDINGS = keymap.bindings_of(keymap.ASK)

    def __init__(self, question: str, value: str = "", check: Callable[[str], str | None] | None = None) -> None:
        super().__init__()
        self.question = question
        self.value = value
        self.check = check

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog"):
            yield Label(self.question, classes="question", markup=False)
            yield Input(value=self.value, id="answer")
            yield Label("", id="answer-error", classes="error", markup=False)

    def on_input_submitted(self, event: Input.Submitted) -> None:
        value = event.value.strip()
        problem = "nothing entered" if not value else (self.check(value) if self.check else None)
        if problem:
            self.query_one("#answer-error", Label).update(problem)
            return
        self.dismiss(value)

    def action_cancel(self) -> None:
        self.dismiss(None)


def check_path(value: str) -> str | None:
    """A text source the corpus loader can try: an existing path or a built-in name."""
    if is_builtin(value) or Path(value).expanduser().exists():
        return None
    return f"{value}: no such file or directory"
