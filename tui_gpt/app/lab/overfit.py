"""Experiment: overfit on purpose. Train on one fable alone, watch train fall and val rise, and go back.

Before the switch the run is saved to its folder (the experiment starts only once the Saved comes back);
the one-fable run then saves in a new folder beside it (the trainer's reset keeps a checkpoint). The way
back is a reset that resumes from that save, as it was when the person left it.
"""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING, Any

from tui_gpt.app.keymap import key_of
from tui_gpt.app.lab import Experiment
from tui_gpt.app.messages import ResetRun
from tui_gpt.app.screens.confirm import ConfirmScreen
from tui_gpt.link.protocol import Failed, Save, Saved
from tui_gpt.probes.hints import memorized

if TYPE_CHECKING:
    from tui_gpt.app.state import Doors
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


class OverfitExperiment(Experiment):
    replies = (Saved, Failed)

    def __init__(self, doors: Doors) -> None:
        super().__init__(doors)
        self.leaving: RunSpec | None = None  # the run being saved before the switch, until its Saved comes
        self.back: RunSpec | None = None  # the way back: the run as saved, resumed from its checkpoint

    @property
    def key(self) -> str:
        return key_of("lab_overfit")

    @property
    def running(self) -> bool:
        """The one-fable run is the run in force (not before its Ready, nor after another reset)."""
        return self.back is not None and self.run.spec.sources == [FABLE]

    def label(self) -> list[str]:
        """The title's words while it runs."""
        return [f"{LABEL} ({self.key}: back to your run)"] if self.running else []

    def small_text(self) -> tuple[str, int] | None:
        """For the hints while it runs: what the text is, and its training tokens."""
        ready = self.run.ready
        if not self.running or ready is None:
            return None
        return WHAT, int(ready.corpus.get("train_tokens") or 0)

    def start(self) -> None:
        if self.leaving is not None:
            self.ui.notify("Saving your run first; the experiment starts when it is saved.", title="Overfit")
        elif self.back is not None:
            self.go_back()
        elif self.run.ready is None:
            self.ui.notify("The run is still loading: try again when it trains.", title="Overfit")
        else:
            question = QUESTION.format(out=self.run.out, key=self.key)
            self.ui.push_screen(ConfirmScreen(question), self._answered)

    def _answered(self, yes: bool | None) -> None:
        if yes:
            self.leaving = self.run.spec
            self.client.send(Save(self.run.out))

    def on_reply(self, event: Any) -> None:
        """The save before the switch: on Saved, switch; on a failed save (or a trainer gone), stay."""
        spec = self.leaving
        if spec is None or (isinstance(event, Failed) and not (event.save_path or event.fatal)):
            return  # nothing asked, or a failure of something else
        self.leaving = None
        if isinstance(event, Failed):
            self.ui.notify(
                f"Your run could not be saved, so the experiment did not start: {event.message}",
                title="Overfit",
                severity="error",
                markup=False,
            )
            return
        self.back = replace(spec, resume=event.path, given=[])  # the checkpoint keeps its own settings
        train = replace(spec.train, eval_interval=min(spec.train.eval_interval or EVAL_EVERY, EVAL_EVERY))
        one_fable = replace(
            spec, sources=[FABLE], resume=None, dropout=0.0, dropout_note="", causal=True, train=train, given=[]
        )
        self.ui.post_message(ResetRun(one_fable))

    def go_back(self) -> None:
        """Reset to the run as saved, and say what the experiment showed."""
        lesson = self._lesson()  # while the one-fable run is still the run in force
        back, self.back = self.back, None
        assert back is not None
        self.ui.post_message(ResetRun(back))
        self.ui.notify(
            f"{lesson}Back to your run: resuming from {back.resume}.",
            title="Overfit experiment",
            timeout=20,
            markup=False,
        )

    def _lesson(self) -> str:
        """The hint's words on the curve the one-fable run drew, if it ran."""
        small = self.small_text()
        if small is None:
            return ""
        curve = self.training.curve
        hint = memorized(small, curve.eval_train, curve.eval_val)
        if hint.kind != "memorized":
            return "The one-fable run stopped before its val loss rose well above train: give it a few hundred steps.\n"
        return hint.text + "\n"
