"""Textual messages that carry the trainer's events into the app."""

from __future__ import annotations

from typing import TYPE_CHECKING

from textual.message import Message

from tui_gpt.protocol import Event, Ready

if TYPE_CHECKING:
    from tui_gpt.lens import Lens, StagedModel


class TrainerEvent(Message):
    """Any protocol event from the trainer process (loss batches, status, errors)."""

    def __init__(self, event: Event) -> None:
        super().__init__()
        self.event = event


class LensReady(Message):
    """A run is ready, and the app's copy of its model is built."""

    def __init__(self, ready: Ready, lens: Lens) -> None:
        super().__init__()
        self.ready = ready
        self.lens = lens


class WeightsStaged(Message):
    """New weights are loaded into a spare model, ready to swap in."""

    def __init__(self, lens: Lens, model: StagedModel, step: int) -> None:
        super().__init__()
        self.lens = lens
        self.model = model
        self.step = step

    def can_replace(self, message: Message) -> bool:
        return isinstance(message, WeightsStaged)
