"""Experiment: colour a text by the rank the model gave each token. Where is the model surprised?"""

from __future__ import annotations

from typing import TYPE_CHECKING

from tui_gpt.app.lab import Experiment
from tui_gpt.app.screens.dialogs import ChoiceScreen

if TYPE_CHECKING:
    from tui_gpt.app.lab.memorization import MemorizationExperiment
    from tui_gpt.app.state import Doors


class SurprisalExperiment(Experiment):
    def __init__(self, doors: Doors, memorization: MemorizationExperiment) -> None:
        super().__init__(doors)
        self.memorization = memorization  # its last sample is one of the texts to colour

    def start(self) -> None:
        ui, run = self.ui, self.run
        if run.lens is None:
            return
        from tui_gpt.app.screens.surprisal import SurprisalScreen

        passages = run.passages()
        sample = self.memorization.last_sample
        sources = [("prompt", "The prompt")]
        if passages:
            sources.append(("passage", "A corpus passage"))
        if sample:
            sources.append(("sample", "The last sample"))

        def chosen(which: str | None) -> None:
            text = {"prompt": self.prompt.value, "passage": passages[0] if passages else "", "sample": sample or ""}
            if which in text and run.lens is not None:
                ui.push_screen(SurprisalScreen(run.lens, text[which], dict(sources)[which].lower()))

        ui.push_screen(ChoiceScreen("Colour which text by surprisal?", sources), chosen)
