"""Experiment: train with the causal mask off, and back. Did my mask leak?"""

from __future__ import annotations

from dataclasses import replace

from tui_gpt.app.lab import Experiment
from tui_gpt.app.messages import MaskSwitched, ResetRun
from tui_gpt.app.screens.choice import ChoiceScreen
from tui_gpt.link.protocol import SetCausal

QUESTION = (
    "Train WITHOUT the causal mask? Every position will see the tokens after it, so the "
    "train loss collapses by copying the answer, while greedy generation (which has no "
    "future to copy) turns to nonsense. Press the same key again to switch back."
)


class MaskExperiment(Experiment):
    @property
    def off(self) -> bool:
        return self.settings.mask_off

    def start(self) -> None:
        ui = self.ui
        if self.off:
            self.client.send(SetCausal(True))
            self.show(False)
            ui.notify("Causal mask back on: normal training.", title="Mask experiment")
            return

        def chosen(answer: str | None) -> None:
            if answer == "current":
                self.client.send(SetCausal(False))
                self.show(True)
            elif answer == "scratch":
                ui.post_message(ResetRun(replace(self.run.spec, causal=False, resume=None)))
                self.show(True)

        ui.push_screen(
            ChoiceScreen(QUESTION, [("current", "From current weights"), ("scratch", "From scratch")]), chosen
        )

    def show(self, off: bool) -> None:
        """Mark every view (app.py: the replica, the title, the training pane, the probes)."""
        self.ui.post_message(MaskSwitched(off))
