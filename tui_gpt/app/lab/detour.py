"""Experiments that leave your run for another and come back: overfitting on purpose, the circuits experiment.

Before the switch the run is saved to its folder (the other run starts only once the Saved comes back); the
other run saves in a new folder beside it (the trainer's reset keeps a checkpoint). The way back is a reset
that resumes from that save, as it was when the person left it. A subclass says where it goes and what it says.
"""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING, Any, ClassVar

from tui_gpt.app.keymap import key_of
from tui_gpt.app.lab import Experiment
from tui_gpt.app.messages import ResetRun
from tui_gpt.app.screens.confirm import ConfirmScreen
from tui_gpt.link.protocol import Failed, Save, Saved

if TYPE_CHECKING:
    from tui_gpt.app.state import Doors
    from tui_gpt.settings import RunSpec


class Detour(Experiment):
    replies = (Saved, Failed)
    action: ClassVar[str]  # its key's action in the keymap
    title: ClassVar[str]  # its notifications' title
    question: ClassVar[str]  # what the person is asked first, with {out} (the run's folder) and {key}

    def __init__(self, doors: Doors) -> None:
        super().__init__(doors)
        self.leaving: RunSpec | None = None  # the run being saved before the switch, until its Saved comes
        self.back: RunSpec | None = None  # the way back: the run as saved, resumed from its checkpoint
        self.away: RunSpec | None = None  # the experiment's run

    @property
    def key(self) -> str:
        return key_of(self.action)

    @property
    def running(self) -> bool:
        """The experiment's run is the run in force (not before its Ready, nor after another reset)."""
        away = self.away
        return self.back is not None and away is not None and self.run.spec.sources == away.sources

    def destination(self, spec: RunSpec) -> RunSpec:
        """The experiment's run, from the person's run `spec`."""
        raise NotImplementedError

    def arrived(self) -> None:
        """The switch to the experiment's run is asked for."""

    def lesson(self) -> str:
        """What the experiment's run showed, a line ending in a newline (or nothing), said on the way back."""
        return ""

    def start(self) -> None:
        if self.leaving is not None:
            self.ui.notify("Saving your run first; the experiment starts when it is saved.", title=self.title)
        elif self.back is not None:
            self.go_back()
        elif self.run.ready is None:
            self.ui.notify("The run is still loading: try again when it trains.", title=self.title)
        else:
            question = self.question.format(out=self.run.out, key=self.key)
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
                title=self.title,
                severity="error",
                markup=False,
            )
            return
        self.back = replace(spec, resume=event.path, given=[])  # the checkpoint keeps its own settings
        self.away = self.destination(spec)
        self.ui.post_message(ResetRun(self.away))
        self.arrived()

    def go_back(self) -> None:
        """Reset to the run as saved, and say what the experiment showed."""
        lesson = self.lesson()  # while the experiment's run is still the run in force
        back, self.back, self.away = self.back, None, None
        assert back is not None
        self.ui.post_message(ResetRun(back))
        self.ui.notify(
            f"{lesson}Back to your run: resuming from {back.resume}.",
            title=f"{self.title} experiment",
            timeout=20,
            markup=False,
        )
