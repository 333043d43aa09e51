"""Small modal dialogs: confirm, choose, ask for a line of text, show a page.

Questions and errors name files, folders and the user's own text: they are shown as plain text
(markup=False), so a file called "data[v2].txt" is never read as markup.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from rich.console import RenderableType
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Button, Input, Label, Static

from tui_gpt.settings import BUILTINS


class ConfirmScreen(ModalScreen[bool]):
    """Yes or no. `y`/`enter` confirm, `n`/`escape` cancel."""

    BINDINGS = [Binding("y", "answer(True)", "Yes"), Binding("n,escape", "answer(False)", "No")]

    def __init__(self, question: str) -> None:
        super().__init__()
        self.question = question

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog"):
            yield Label(self.question, classes="question", markup=False)
            with Horizontal(classes="buttons"):
                yield Button("Yes (y)", variant="warning", id="yes")
                yield Button("No (n)", id="no")

    def on_mount(self) -> None:
        self.query_one("#yes", Button).focus()

    def on_button_pressed(self, event: Button.Pressed) -> None:
        self.dismiss(event.button.id == "yes")

    def action_answer(self, yes: bool) -> None:
        self.dismiss(yes)


class AskScreen(ModalScreen[str | None]):
    """Ask for one line of text; `check` returns an error message, or None to accept."""

    BINDINGS = [Binding("escape", "cancel", "Cancel")]

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
    if value in BUILTINS or Path(value).expanduser().exists():
        return None
    return f"{value}: no such file or directory"


class ChoiceScreen(ModalScreen[str | None]):
    """A question with a few answers, one button each; escape cancels."""

    BINDINGS = [Binding("escape", "cancel", "Cancel")]

    def __init__(self, question: str, choices: list[tuple[str, str]]) -> None:
        super().__init__()
        self.question = question
        self.choices = choices

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog"):
            yield Label(self.question, classes="question", markup=False)
            with Horizontal(classes="buttons"):
                for key, label in self.choices:
                    yield Button(label, id=f"choice-{key}")
                yield Button("Cancel", id="choice-cancel")

    def on_button_pressed(self, event: Button.Pressed) -> None:
        key = (event.button.id or "").removeprefix("choice-")
        self.dismiss(None if key == "cancel" else key)

    def action_cancel(self) -> None:
        self.dismiss(None)


class TextScreen(ModalScreen[None]):
    """A read-only page: a title and any Rich renderable, scrollable."""

    BINDINGS = [Binding("escape,q", "dismiss", "Close")]

    def __init__(self, title: str, body: RenderableType) -> None:
        super().__init__()
        self.title_text = title
        self.body = body

    def compose(self) -> ComposeResult:
        with VerticalScroll(classes="page") as page:
            page.border_title = self.title_text
            yield Static(self.body, id="page-body")

    def update(self, body: RenderableType) -> None:
        self.query_one("#page-body", Static).update(body)
