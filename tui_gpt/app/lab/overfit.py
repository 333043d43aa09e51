"""Experiment: overfit on purpose. Train on one fable alone, watch train fall and val rise, and go back.

A detour (detour.py): the run is saved first, the one-fable run trains from scratch, and the same key
resumes the run from that save.
"""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING

from tui_gpt.app.lab.detour import Detour
from tui_gpt.probes.hints import memorized

if TYPE_CHECKING:
    from tui_gpt.settings import RunSpec

FABLE = "fables/01"  # the bundled fable the model learns by heart: a built-in text (engine/corpus.py)
WHAT = "one fable"  # the hint's name for it
EVAL_EVERY = 50  # evaluate at least this often: the val curve rises within a few hundred steps
LABEL = "OVERFIT: training on one fable only"

QUESTION = (
    "Overfit on purpose? Your run is saved to {out} first. Then a model of the same size trains from "
    "scratch on ONE fable alone (a page of 3,000 characters, no dropout). Watch the Training pane: the "
    "train loss falls towards zero while the val loss stops falling and rises: the model learns the fable "
    "by heart instead of learning to write. Press {key} again to go back to your run, resumed from that save."
)


class OverfitExperiment(Detour):
    action = "lab_overfit"
    title = "Overfit"
    question = QUESTION

    def label(self) -> list[str]:
        """The title's words while it runs."""
        return [f"{LABEL} ({self.key}: back to your run)"] if self.running else []

    def small_text(self) -> tuple[str, int] | None:
        """For the hints while it runs: what the text is, and its training tokens."""
        ready = self.run.ready
        if not self.running or ready is None:
            return None
        return WHAT, int(ready.corpus.get("train_tokens") or 0)

    def destination(self, spec: RunSpec) -> RunSpec:
        train = replace(spec.train, eval_interval=min(spec.train.eval_interval or EVAL_EVERY, EVAL_EVERY))
        return replace(
            spec, sources=[FABLE], resume=None, dropout=0.0, dropout_note="", causal=True, train=train, given=[]
        )

    def lesson(self) -> str:
        """The hint's words on the curve the one-fable run drew, if it ran."""
        small = self.small_text()
        if small is None:
            return ""
        curve = self.training.curve
        hint = memorized(small, curve.eval_train, curve.eval_val)
        if hint.kind != "memorized":
            return "The one-fable run stopped before its val loss rose well above train: give it a few hundred steps.\n"
        return hint.text + "\n"
