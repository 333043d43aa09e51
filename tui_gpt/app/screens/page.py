"""A modal read-only page: a title and any Rich renderable, scrollable."""

from __future__ import annotations

from rich.console import RenderableType
from textual.app import ComposeResult
from textual.containers import VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Static

from tui_gpt.app import keymap


class PageScreen(ModalScreen[None]):
    """A read-only page: a title and any Rich renderable, scrollable."""

    BINDINGS = keymap.bindings_of(keymap.TEXT)

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
