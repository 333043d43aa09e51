"""Reproduce and export: the command that reproduces the run; the loss history, examples and screen as files."""

from __future__ import annotations

import shlex
from pathlib import Path

from rich.text import Text

from tui_gpt.app.lab import Experiment
from tui_gpt.app.screens.dialogs import TextScreen
from tui_gpt.export import examples_csv, history_csv
from tui_gpt.settings import reproduce_command


class ExportExperiment(Experiment):
    def reproduce(self) -> None:
        command = reproduce_command(self.app.spec)
        self.app.copy_to_clipboard(command)
        self.app.push_screen(TextScreen("Reproduce this run", Text(command + "\n\n(copied to the clipboard)")))

    def export(self) -> None:
        app = self.app
        folder = Path(app.out).expanduser().resolve().parent
        written = []
        try:
            path = folder / "tui-gpt-history.csv"
            path.write_text(history_csv(app.training.curve.history()), encoding="utf-8")
            written.append(path)
            if app.probes.last_analysis is not None:
                rows, labels = app.probes.last_analysis
                path = folder / "tui-gpt-examples.csv"
                path.write_text(examples_csv(rows, labels), encoding="utf-8")
                written.append(path)
            written.append(Path(app.save_screenshot(path=str(folder))))
        except OSError as exc:
            app.notify(f"could not export to {folder}: {exc.strerror or exc}", severity="error", markup=False)
            return
        app.notify("\n".join(shlex.quote(str(p)) for p in written), title="Exported", markup=False)
