"""The lab: experiments that answer the questions people ask of a training run.

Each experiment is a controller in its own module that owns its state. It starts from an
action, asks the trainer or the run's Replica, and shows the answer; trainer replies reach it
through the app's router (`Experiment.replies`). It gets the doors of `state.Doors`, not the app:
it reads the run and the probe settings, and asks the app for changes with messages.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, ClassVar

from rich.console import Group

from tui_gpt.app.widgets.prompt import PromptInput
from tui_gpt.app.widgets.training import TrainingPane

if TYPE_CHECKING:
    from tui_gpt.app.screens.page import PageScreen
    from tui_gpt.app.state import Doors


class Experiment:
    """One lab experiment: Textual's services (`ui`), the run, the probe settings and the trainer client."""

    replies: ClassVar[tuple[type, ...]] = ()  # the trainer events it waits for

    def __init__(self, doors: Doors) -> None:
        self.ui, self.run, self.settings, self.client = doors.ui, doors.run, doors.settings, doors.client
        self.page: PageScreen | None = None  # the page waiting for a trainer reply, if any

    @property
    def prompt(self) -> PromptInput:
        return self.ui.query_one(PromptInput)

    @property
    def training(self) -> TrainingPane:
        return self.ui.query_one(TrainingPane)

    def on_reply(self, event: Any) -> None:
        """A trainer reply of one of the `replies` types; shown only while its page is still open."""
        if self.page is not None and self.page in self.ui.screen_stack:
            self.page.update(self.render_reply(event))
        self.page = None

    def render_reply(self, event: Any) -> Any:
        raise NotImplementedError


def stack(*parts: Any) -> Group:
    """Renderables one below the other, for a page."""
    return Group(*parts)
