"""Quitting: save through the trainer, wait for the save however long it takes, then exit.

A person whose save failed is asked whether to quit without it; a signal quits regardless.
"""

from __future__ import annotations

from functools import partial
from typing import TYPE_CHECKING

from tui_gpt.app.screens.dialogs import ConfirmScreen
from tui_gpt.protocol import Failed, Saved

if TYPE_CHECKING:
    from tui_gpt.app.app import GPTApp


class Quitting:
    def __init__(self, app: GPTApp) -> None:
        self.app = app

    def start(self, save: bool = True) -> None:
        self.app.leaving = True  # trainer events and timers no longer touch the screen
        work = partial(self._stop_trainer, save)
        self.app.run_worker(work, thread=True, exclusive=True, group="trainer", exit_on_error=False)

    def _stop_trainer(self, save: bool) -> None:
        """Save a checkpoint and end the trainer process, off the UI thread, then exit."""
        app = self.app
        # Before the run is built nothing is trained: end the trainer at once, without a save.
        app.saves_on_quit = save and app.ready is not None
        outcome = app.client.stop(save=app.out if app.saves_on_quit else None, timeout=3.0 if save else 0)
        if isinstance(outcome, Failed):
            if app.signalled is None:  # a person asked to quit: let them choose
                app.call_from_thread(self._save_failed, outcome)
                return
            app.client.stop(save=None)
        app.final_save = outcome if isinstance(outcome, Saved) else None
        app.call_from_thread(app.exit)

    def _save_failed(self, failed: Failed) -> None:
        def answer(quit_anyway: bool | None) -> None:
            if quit_anyway:
                self.start(save=False)
            else:
                self.app.run_status.show("training")

        self.app.leaving = False
        self.app.run_status.error = failed.message
        self.app.push_screen(ConfirmScreen(f"{failed.message}.\nQuit without saving?"), answer)
