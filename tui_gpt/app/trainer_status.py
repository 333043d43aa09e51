"""Where the run stands, from the trainer's events: step, paused, status, the last losses, errors, saves."""

from __future__ import annotations

from typing import TYPE_CHECKING

from tui_gpt.app.screens.confirm import ConfirmScreen
from tui_gpt.app.widgets.training import TrainingPane
from tui_gpt.link.protocol import Failed, Loading, Losses, Pause, Ready, Resume, Save, Saved, Status, Stopped

if TYPE_CHECKING:
    from tui_gpt.app.router import Router
    from tui_gpt.app.state import Doors
    from tui_gpt.settings import RunSpec


class TrainerStatus:
    def __init__(self, doors: Doors) -> None:
        self.ui, self.run, self.client = doors.ui, doors.run, doors.client
        self.step = 0
        self.paused = False
        self.status = "starting"
        self.last_event: dict | None = None  # the newest TrainEvent, as a dict
        self.error: str | None = None
        self.saved: Saved | None = None

    def connect(self, router: Router) -> None:
        for kind, handler in (
            (Losses, self.on_losses),
            (Status, self.on_status),
            (Loading, self.on_loading),
            (Saved, self.on_saved),
            (Failed, self.on_failed),
            (Stopped, self.on_stopped),
        ):
            router.add(kind, handler)

    @property
    def training(self) -> TrainingPane:
        return self.ui.query_one(TrainingPane)

    def show(self, status: str | None = None) -> None:
        """Set the status word (if given) and redraw the stats lines."""
        if status is not None:
            self.status = status
        if not self.run.leaving:
            self.training.show_stats(self.status, self.step, self.last_event, self.error)

    def begin(self, ready: Ready) -> None:
        """A new run is ready: its step and its history on the training pane; still paused if it was."""
        self.step, self.error = ready.step, None
        self.training.set_run(ready)
        if self.paused:
            self.client.send(Pause())
        self.show("paused" if self.paused else "training")

    def toggle_pause(self) -> None:
        paused = self.paused = not self.paused
        self.client.send(Pause() if paused else Resume())
        self.show("paused" if paused else "training")

    def restart_trainer(self, spec: RunSpec) -> None:
        self.error = None
        self.client.start(spec)
        self.show("restarting")

    def note_error(self, message: str) -> None:
        """An error to show with the next redraw of the stats lines."""
        self.error = message

    def restart(self, step: int = 0) -> None:
        self.step, self.last_event = step, None
        self.show("restarting")

    def on_losses(self, ev: Losses) -> None:
        self.training.curve.add(ev.events)
        if ev.events:
            self.last_event = ev.events[-1]
            self.step = self.last_event["step"]

    def on_status(self, ev: Status) -> None:
        self.paused, self.step = ev.paused, ev.step  # the spec it reports: app.py keeps it (LiveRun.reported)
        self.show("paused" if ev.paused else "training")

    def on_loading(self, ev: Loading) -> None:
        self.show(f"{ev.what} {ev.done / ev.total:.0%}" if ev.total > 1 else ev.what)

    def on_saved(self, ev: Saved) -> None:
        self.saved = ev
        self.ui.notify(f"saved step {ev.step} to {ev.path}", title="Checkpoint", markup=False)

    def on_failed(self, ev: Failed) -> None:
        self.error = ev.message
        if ev.fatal:
            self.status = "stopped"
            self.ui.notify(
                f"{ev.message}\nThe app keeps working. Restart the trainer from the command palette.",
                title="Trainer error",
                severity="error",
                timeout=15,
                markup=False,  # trainer messages name files and folders: text, never markup
            )
        elif ev.save_path:
            self._offer_retry(ev.message, ev.save_path)
        else:
            self.ui.notify(ev.message, title="Trainer", severity="warning", timeout=8, markup=False)
        self.show()

    def _offer_retry(self, message: str, save_path: str) -> None:
        def answer(again: bool | None) -> None:
            if again:
                self.client.send(Save(save_path))

        self.ui.push_screen(ConfirmScreen(f"{message}.\nFree some space or fix the folder, then: try again?"), answer)

    def on_stopped(self, ev: Stopped) -> None:
        self.status = "stopped"
