"""The prompt: an input with ghost text after the cursor, the model's likeliest continuation."""

from __future__ import annotations

from textual.geometry import Size
from textual.reactive import Reactive
from textual.widgets import Input

from tui_gpt.app import keymap


class PromptInput(Input):
    """Tab accepts one token of the ghost text; Right (at the end) accepts the whole word.

    The ghost is set by the app (`set_ghost`) from the model; what is accepted is exactly
    the text shown, so a subword token never adds or drops a space.
    """

    # Input grows its virtual size with every character, and Widget's reactive then lays out
    # the whole screen (about 15 ms here). A one-line prompt of fixed width needs no layout:
    # a repaint is enough, and the key's bars reach the screen sooner.
    virtual_size = Reactive(Size(0, 0), layout=False)

    BINDINGS = keymap.bindings_of(keymap.PROMPT)

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self.ghost = ""
        self.ghost_first = ""

    def set_ghost(self, text: str, first: str) -> None:
        """Show `text` after the typed value; `first` is the first token's part of it."""
        self.ghost, self.ghost_first = text, first
        self._suggestion = self.value + text if text else ""

    def _watch_value(self, value: str) -> None:
        super()._watch_value(value)
        self.ghost = self.ghost_first = ""

    def action_accept_token(self) -> None:
        if self.ghost_first and self.cursor_at_end:
            self.insert_text_at_cursor(self.ghost_first)
