"""A few lines of markup that repaint without a layout pass (unlike `Static.update`)."""

from __future__ import annotations

from textual.reactive import reactive
from textual.widget import Widget


class InfoLine(Widget):
    """Set `text` (Textual markup); give it a fixed height in CSS."""

    DEFAULT_CSS = "InfoLine { height: 1; }"

    text: reactive[str] = reactive("", layout=False)

    def render(self) -> str:
        return self.text
