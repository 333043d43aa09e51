"""Textual messages: the trainer's events into the app, and the controllers' requests to it."""

from __future__ import annotations

from typing import TYPE_CHECKING

from textual.message import Message

from tui_gpt.link.protocol import Event, Failed, Ready, Saved

if TYPE_CHECKING:
    from tui_gpt.probes.replica import Replica, StagedModel
    from tui_gpt.settings import RunSpec


class TrainerEvent(Message):
    """Any protocol event from the trainer process (loss batches, status, errors)."""

    def __init__(self, event: Event) -> None:
        super().__init__()
        self.event = event


class ReplicaReady(Message):
    """A run is ready, and the app's copy of its model is built."""

    def __init__(self, ready: Ready, replica: Replica) -> None:
        super().__init__()
        self.ready = ready
        self.replica = replica


class WeightsStaged(Message):
    """New weights are loaded into a spare model, ready to swap in."""

    def __init__(self, replica: Replica, model: StagedModel, step: int) -> None:
        super().__init__()
        self.replica = replica
        self.model = model
        self.step = step

    def can_replace(self, message: Message) -> bool:
        return isinstance(message, WeightsStaged)


# ---- controllers to the app: changes travel as messages, handled in app.py ----
class ResetRun(Message):
    """Start the run again from `spec` (a reset, other text, another tokenizer or size)."""

    def __init__(self, spec: RunSpec) -> None:
        super().__init__()
        self.spec = spec


class MaskSwitched(Message):
    """The mask experiment switched the causal mask off (or back on): every view is marked."""

    def __init__(self, off: bool) -> None:
        super().__init__()
        self.off = off


class Pinned(Message):
    """An example is pinned: the top-k marks `target` (and `word`) whenever it shows the prefix `prefix_ids`."""

    def __init__(self, prefix_ids: list[int], target: int, word: str) -> None:
        super().__init__()
        self.prefix_ids = prefix_ids
        self.target = target
        self.word = word


class QuitDone(Message):
    """The trainer is stopped (with what the quit saved, if anything): exit."""

    def __init__(self, saved: Saved | None) -> None:
        super().__init__()
        self.saved = saved


class QuitSaveFailed(Message):
    """The save before quitting failed, and a person asked to quit: stay, and let them choose."""

    def __init__(self, failed: Failed) -> None:
        super().__init__()
        self.failed = failed


class QuitAnyway(Message):
    """After a failed save, the person chose to quit without saving."""
