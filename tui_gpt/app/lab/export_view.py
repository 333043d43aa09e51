"""Reproduce and export: the command that reproduces the run; the loss history, examples and screen as files."""

from __future__ import annotations

import shlex
from pathlib import Path
from typing import TYPE_CHECKING

from rich.text import Text

from tui_gpt.app.lab import Experiment
from tui_gpt.app.screens.page import PageScreen
from tui_gpt.probes.export import examples_csv, history_csv
from tui_gpt.settings import reproduce_command

if TYPE_CHECKING:
    from tui_gpt.app.prompt_probes import Probes
    from tui_gpt.app.state import Doors


class ExportExperiment(Experiment):
    def __init__(self, doors: Doors, probes: Probes) -> None:
        super().__init__(doors)
        self.probes = probes  # what the examples pane shows (`last_analysis`), for the examples file

    def reproduce(self) -> None:
        command = reproduce_command(self.run.spec)
        self.ui.copy_to_clipboard(command)
        self.ui.push_screen(PageScreen("Reproduce this run", Text(command + "\n\n(copied to the clipboard)")))

    def export(self) -> None:
        ui = self.ui
        folder = Path(self.run.out).expanduser().resolve().parent
        written = []
        try:
            path = folder / "tui-gpt-history.csv"
            path.write_text(history_csv(self.training.curve.history()), encoding="utf-8")
            written.append(path)
            if self.probes.last_analysis is not None:
                rows, labels = self.probes.last_analysis
                path = folder / "tui-gpt-examples.csv"
                path.write_text(examples_csv(rows, labels), encoding="utf-8")
                written.append(path)
            written.append(Path(ui.save_screenshot(path=str(folder))))
        except OSError as exc:
            ui.notify(f"could not export to {folder}: {exc.strerror or exc}", severity="error", markup=False)
            return
        ui.notify("\n".join(shlex.quote(str(p)) for p in written), title="Exported", markup=False)
