"""Quitting: save through the trainer, wait for the save however long it takes, then exit.

A person whose save failed is asked whether to quit without it; a signal quits regardless.
"""

from __future__ import annotations

from functools import partial
from typing import TYPE_CHECKING

from tui_gpt.app.messages import QuitAnyway, QuitDone, QuitSaveFailed
from tui_gpt.app.screens.confirm import ConfirmScreen
from tui_gpt.link.protocol import Failed, Saved

if TYPE_CHECKING:
    from tui_gpt.app.state import Doors
    from tui_gpt.app.trainer_status import TrainerStatus


class Quitting:
    def __init__(self, doors: Doors, status: TrainerStatus) -> None:
        self.ui, self.run, self.client = doors.ui, doors.run, doors.client
        self.status = status
        self.saves_on_quit = False

    def start(self, save: bool = True) -> None:
        """Stop the trainer, off the UI thread; QuitDone or QuitSaveFailed tells the app how it went."""
        work = partial(self._stop_trainer, save)
        self.ui.run_worker(work, thread=True, exclusive=True, group="trainer", exit_on_error=False)

    def _stop_trainer(self, save: bool) -> None:
        """Save a checkpoint and end the trainer process, off the UI thread."""
        # Before the run is built nothing is trained: end the trainer at once, without a save.
        self.saves_on_quit = save and self.run.ready is not None
        outcome = self.client.stop(save=self.run.out if self.saves_on_quit else None, timeout=3.0 if save else 0)
        if isinstance(outcome, Failed):
            if self.run.signalled is None:  # a person asked to quit: let them choose
                self.ui.post_message(QuitSaveFailed(outcome))
                return
            self.client.stop(save=None)
        self.ui.post_message(QuitDone(outcome if isinstance(outcome, Saved) else None))

    def ask(self, failed: Failed) -> None:
        """The save failed and the app stays: quit without it (QuitAnyway), or go on training?"""

        def answer(quit_anyway: bool | None) -> None:
            if quit_anyway:
                self.ui.post_message(QuitAnyway())
            else:
                self.status.show("training")

        self.status.note_error(failed.message)
        self.ui.push_screen(ConfirmScreen(f"{failed.message}.\nQuit without saving?"), answer)
