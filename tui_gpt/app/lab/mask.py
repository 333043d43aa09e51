"""Experiment: train with the causal mask off, and back. Did my mask leak?"""

from __future__ import annotations

from dataclasses import replace

from tui_gpt.app.lab import Experiment
from tui_gpt.app.screens.dialogs import ChoiceScreen
from tui_gpt.protocol import SetCausal

QUESTION = (
    "Train WITHOUT the causal mask? Every position will see the tokens after it, so the "
    "train loss collapses by copying the answer, while greedy generation (which has no "
    "future to copy) turns to nonsense. Press the same key again to switch back."
)


class MaskExperiment(Experiment):
    off = False

    def start(self) -> None:
        app = self.app
        if self.off:
            app.client.send(SetCausal(True))
            self.show(False)
            app.notify("Causal mask back on: normal training.", title="Mask experiment")
            return

        def chosen(answer: str | None) -> None:
            if answer == "current":
                app.client.send(SetCausal(False))
                self.show(True)
            elif answer == "scratch":
                app.reset(replace(app.spec, causal=False, resume=None))
                self.show(True)

        app.push_screen(
            ChoiceScreen(QUESTION, [("current", "From current weights"), ("scratch", "From scratch")]), chosen
        )

    def show(self, off: bool) -> None:
        """Mark every view: the lens, the title, the training pane, the probes."""
        app = self.app
        self.off = off
        if app.lens is not None:
            app.lens.set_causal(not off)
        app.sub_title = "MASK OFF: the causal-mask experiment is running" if off else ""
        app.training.set_mask_off(off)
        app.probes.refresh()
        app.probes.update_greedy()
