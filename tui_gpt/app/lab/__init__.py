"""The lab: experiments that answer the questions people ask of a training run.

Each experiment is a controller in its own module that owns its state. It starts from an
action, asks the trainer or the app's Lens, and shows the answer; trainer replies reach it
through the app's router (`Experiment.replies`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, ClassVar

from rich.console import Group

if TYPE_CHECKING:
    from tui_gpt.app.app import GPTApp
    from tui_gpt.app.screens.dialogs import TextScreen


class Experiment:
    """One lab experiment, bound to the app."""

    replies: ClassVar[tuple[type, ...]] = ()  # the trainer events it waits for

    def __init__(self, app: GPTApp) -> None:
        self.app = app
        self.page: TextScreen | None = None  # the page waiting for a trainer reply, if any

    def on_reply(self, event: Any) -> None:
        """A trainer reply of one of the `replies` types; shown only while its page is still open."""
        if self.page is not None and self.page in self.app.screen_stack:
            self.page.update(self.render_reply(event))
        self.page = None

    def render_reply(self, event: Any) -> Any:
        raise NotImplementedError


def stack(*parts: Any) -> Group:
    """Renderables one below the other, for a page."""
    return Group(*parts)
