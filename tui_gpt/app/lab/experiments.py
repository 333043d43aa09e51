"""All of the lab's experiments for one app, and the trainer replies each waits for."""

from __future__ import annotations

from typing import TYPE_CHECKING

from tui_gpt.app.lab.circuits import CircuitsExperiment
from tui_gpt.app.lab.compare_view import CompareExperiment
from tui_gpt.app.lab.export_view import ExportExperiment
from tui_gpt.app.lab.heads_view import HeadsExperiment
from tui_gpt.app.lab.live_settings import LiveSettings
from tui_gpt.app.lab.logit_lens_view import LogitLensExperiment
from tui_gpt.app.lab.mask import MaskExperiment
from tui_gpt.app.lab.memorization_view import MemorizationExperiment
from tui_gpt.app.lab.one_step import OneStepExperiment
from tui_gpt.app.lab.overfit import OverfitExperiment
from tui_gpt.app.lab.pin import PinExperiment
from tui_gpt.app.lab.surprisal_view import SurprisalExperiment
from tui_gpt.app.lab.temperature import TemperatureExperiment
from tui_gpt.app.lab.tokens import TokensExperiment

if TYPE_CHECKING:
    from tui_gpt.app.prompt_probes import Probes
    from tui_gpt.app.router import Router
    from tui_gpt.app.state import Doors


class Lab:
    def __init__(self, doors: Doors, probes: Probes) -> None:
        self.mask = MaskExperiment(doors)
        self.overfit = OverfitExperiment(doors)
        self.pin = PinExperiment(doors, probes)
        self.memorization = MemorizationExperiment(doors)
        self.surprisal = SurprisalExperiment(doors, self.memorization, probes)
        self.tokens = TokensExperiment(doors)
        self.temperature = TemperatureExperiment(doors)
        self.one_step = OneStepExperiment(doors, self.pin)
        self.compare = CompareExperiment(doors, probes)
        self.logit_lens = LogitLensExperiment(doors, probes)
        self.heads = HeadsExperiment(doors)
        self.circuits = CircuitsExperiment(doors, self.heads)
        self.settings = LiveSettings(doors)
        self.export = ExportExperiment(doors, probes)

    def connect(self, router: Router) -> None:
        """Hand each trainer reply to the experiment that asked for it."""
        for experiment in vars(self).values():
            for kind in experiment.replies:
                router.add(kind, experiment.on_reply)
