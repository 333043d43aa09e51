"""Experiment: colour a text by the rank the model gave each token. Where is the model surprised?"""

from __future__ import annotations

from tui_gpt.app.lab import Experiment
from tui_gpt.app.screens.dialogs import ChoiceScreen


class SurprisalExperiment(Experiment):
    def start(self) -> None:
        app = self.app
        if app.lens is None:
            return
        from tui_gpt.app.screens.surprisal import SurprisalScreen

        passages = app.passages()
        sample = app.lab.memorization.last_sample
        sources = [("prompt", "The prompt")]
        if passages:
            sources.append(("passage", "A corpus passage"))
        if sample:
            sources.append(("sample", "The last sample"))

        def chosen(which: str | None) -> None:
            text = {"prompt": app.prompt.value, "passage": passages[0] if passages else "", "sample": sample or ""}
            if which in text and app.lens is not None:
                app.push_screen(SurprisalScreen(app.lens, text[which], dict(sources)[which].lower()))

        app.push_screen(ChoiceScreen("Colour which text by surprisal?", sources), chosen)
