"""Experiment: the logit lens. What does each layer already know about the next token?"""

from __future__ import annotations

from tui_gpt.app.lab import Experiment


class LogitLensExperiment(Experiment):
    def start(self) -> None:
        lens = self.run.lens
        if lens is None:
            return
        from tui_gpt.app.screens.logit_lens import LogitLensScreen

        self.ui.push_screen(LogitLensScreen(lens, self.prompt.value, self.settings.top_k))
