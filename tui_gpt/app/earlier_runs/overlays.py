"""Earlier runs of the live run's text on the loss chart: read from the run registry on a thread, chosen in
the Runs screen (the last finished one by default), drawn along steps, seconds or tokens.

The registry and the overlays' data (widgets/overlay.py) load on the first read, after the first paint.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

from tui_gpt.app.widgets.curve import AXES
from tui_gpt.app.widgets.training import TrainingPane
from tui_gpt.errors import TuiGptError

if TYPE_CHECKING:
    from collections.abc import Callable

    from tui_gpt.app.state import Doors
    from tui_gpt.link.protocol import Ready
    from tui_gpt.runs.registry import RunRecord


@dataclass
class Found:
    """What one read of the registry found."""

    runs: list[RunRecord]  # the runs on the live run's text, newest first, the live run left out
    live: RunRecord  # the live run: its own record, or one made from its settings if it is not recorded


def live_record(ready: Ready) -> RunRecord:
    """The live run as a record, from the settings it reports: for a run the registry does not hold."""
    from tui_gpt.runs.recorder import settings_of
    from tui_gpt.runs.registry import RunRecord
    from tui_gpt.runs.tracking import RunInfo

    c = ready.corpus
    info = RunInfo("app", settings_of(ready.spec), c["tokenizer"], c["name"], c.get("digest", ""), "")
    return RunRecord(0, time.time(), "running", info)


def find(ready: Ready, out: str, asked: bool) -> Found:
    """The registry's runs on `ready`'s text. No registry: none, or (`asked`: a person opened the Runs screen) why."""
    from tui_gpt.runs.registry import Registry, registry_path

    path = registry_path()
    if not path.exists():
        if asked:
            raise TuiGptError(f"no run registry yet ({path}): runs are recorded as they train")
        return Found([], live_record(ready))
    with Registry(path) as registry:
        runs = registry.runs(text_digest=ready.corpus.get("digest", ""))
    # The app's trainer records the live run: running, from the app, saving to this run's folder.
    live = next((r for r in runs if r.status == "running" and r.info.kind == "app" and r.info.checkpoint == out), None)
    return Found([r for r in runs if r is not live], live or live_record(ready))


class Overlays:
    """Which earlier runs the loss chart shows, and along which axis; the chart and its legend are the pane's."""

    def __init__(self, doors: Doors) -> None:
        self.ui, self.run = doors.ui, doors.run
        self.axis = next(iter(AXES))
        self.found: Found | None = None
        self.chosen: set[int] | None = None  # picked in the Runs screen; None: the last finished run
        self.reads = 0  # the newest read's answer wins

    @property
    def pane(self) -> TrainingPane:
        return self.ui.query_one(TrainingPane)

    def begin(self, ready: Ready) -> None:
        """A new run: read its text's earlier runs, and show the chosen ones."""
        if self.found is not None and self.found.live.info.text_digest != ready.corpus.get("digest"):
            self.chosen = None  # runs picked on another text are not on this one
        self._read(ready, self.show, asked=False)

    def choose(self) -> None:
        """The Runs screen, on a fresh read of the registry."""
        if self.run.ready is None:
            self.ui.notify("the run is still loading", title="Runs", timeout=3)
            return
        self._read(self.run.ready, self._pick, asked=True)

    def next_axis(self) -> None:
        names = list(AXES)
        self.axis = names[(names.index(self.axis) + 1) % len(names)]
        self.show()
        self.ui.notify(f"the loss chart is drawn along {AXES[self.axis]}", title="Runs", timeout=3)

    def shown(self) -> set[int]:
        from tui_gpt.app.widgets.overlay_lines import last_finished

        if self.found is None:
            return set()
        return self.chosen if self.chosen is not None else last_finished(self.found.runs)

    def show(self) -> None:
        from tui_gpt.app.widgets.overlay_lines import overlay_lines

        lines = []
        if self.found is not None:
            ids = self.shown()
            lines = overlay_lines([r for r in self.found.runs if r.id in ids], self.found.live, self.axis)
        self.pane.set_overlays(lines, self.axis)

    def _read(self, ready: Ready, then: Callable[[], None], asked: bool) -> None:
        """Read the registry on a thread (it may wait on another process's write), then `then` on the UI's."""
        self.reads += 1
        read, out = self.reads, self.run.out

        def work() -> None:
            try:
                found = find(ready, out, asked)
            except Exception as exc:  # a corrupt or foreign registry, a bad row: one line, and the app goes on
                self.ui.call_from_thread(self._refused, read, exc)
            else:
                self.ui.call_from_thread(self._found, read, found, then)

        self.ui.run_worker(work, thread=True, group="overlays", exit_on_error=False)

    def _found(self, read: int, found: Found, then: Callable[[], None]) -> None:
        if read == self.reads and not self.run.leaving:
            self.found = found
            then()

    def _refused(self, read: int, exc: Exception) -> None:
        if read == self.reads and not self.run.leaving:
            why = (str(exc).splitlines() or [type(exc).__name__])[0]
            self.ui.notify(why, title="Run registry", severity="warning", timeout=8, markup=False)

    def _pick(self) -> None:
        from tui_gpt.app.earlier_runs.runs_screen import RunsScreen
        from tui_gpt.app.widgets.overlay_lines import row_cells

        assert self.found is not None
        live = self.found.live
        rows = [(run.id, row_cells(run, live)) for run in self.found.runs]
        title = f"Runs on {live.info.text_name}: which the loss chart overlays"
        self.ui.push_screen(RunsScreen(rows, self.shown(), title), self._picked)

    def _picked(self, ids: set[int] | None) -> None:
        if ids is not None:
            self.chosen = ids
            self.show()
