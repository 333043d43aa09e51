"""A few lines of markup that repaint without a layout pass (unlike `Static.update`)."""

from __future__ import annotations

from textual.content import Content
from textual.reactive import reactive
from textual.widget import Widget


class InfoLine(Widget):
    """Set `text`: markup of our own, or Content where it holds user text (a file name, the prompt)."""

    DEFAULT_CSS = "InfoLine { height: 1; }"

    text: reactive[str | Content] = reactive("", layout=False)

    def render(self) -> str | Content:
        return self.text
