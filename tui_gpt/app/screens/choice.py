"""A modal question with a few answers, one button each.

The question is shown as plain text (markup=False): it may name files, folders and the user's own text.
"""

from __future__ import annotations

from textual.app import ComposeResult
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import Button, Label

from tui_gpt.app import keymap


class ChoiceScreen(ModalScreen[str | None]):
    """A question with a few answers, one button each; escape cancels."""

    BINDINGS = keymap.bindings_of(keymap.ASK)

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
