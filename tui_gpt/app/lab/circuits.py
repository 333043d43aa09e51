"""Experiment: watch an induction head form. A 2-layer model trains on the induction task, with the heads view open.

A detour (detour.py): the run is saved first, then the circuits run (settings.circuits_spec, the same as
`tui-gpt circuits`) trains from scratch on a text where only copying from the context helps, and the heads
view shows its head scores live and marks the phase change. The same key resumes the run from its save.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from tui_gpt.app.lab.detour import Detour
from tui_gpt.probes.phase import find_phase_change
from tui_gpt.settings import CIRCUITS, INDUCTION_TASK, circuits_spec

if TYPE_CHECKING:
    from tui_gpt.app.lab.heads_view import HeadsExperiment
    from tui_gpt.app.state import Doors
    from tui_gpt.settings import RunSpec

LABEL = "CIRCUITS: a 2-layer model on repeated random strings"
QUESTION = (
    "Watch an induction head form? Your run is saved to {out} first. Then a small model ("
    f"{CIRCUITS['n_layer']} layers of {CIRCUITS['n_head']} heads, characters) trains from scratch on "
    f"{INDUCTION_TASK}: lines of a random string repeated, so that only copying from earlier in the line "
    "predicts a letter. The heads view opens: within a few minutes one head of layer 2 starts to attend to the "
    "letter after the earlier occurrence of the current one, its induction score jumps, the loss on repeated "
    "letters falls, and the chart marks the step. Press {key} again to go back to your run, resumed from that save."
)


class CircuitsExperiment(Detour):
    action = "lab_circuits"
    title = "Circuits"
    question = QUESTION

    def __init__(self, doors: Doors, heads: HeadsExperiment) -> None:
        super().__init__(doors)
        self.heads = heads

    def label(self) -> list[str]:
        """The title's words while it runs."""
        return [f"{LABEL} ({self.key}: back to your run)"] if self.running else []

    def destination(self, spec: RunSpec) -> RunSpec:
        return circuits_spec(seed=0)  # the run `tui-gpt circuits` trains, whatever the person's run was

    def arrived(self) -> None:
        self.heads.start()

    def lesson(self) -> str:
        """The phase change the circuits run showed, in words, or that it has not come yet."""
        if not self.running:
            return ""
        curve = self.training.curve
        change = find_phase_change(curve.head_steps, curve.head_scores)
        if change is None:
            return "No induction head formed yet in the circuits run: give it a few minutes.\n"
        return f"Phase change at step {change.step:,}: {change.words()}\n"
