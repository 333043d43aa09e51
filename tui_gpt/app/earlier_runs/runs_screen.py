"""The Runs screen: the registry's runs on the live run's text, each shown on the loss chart or not.

Cells hold settings and file names: they go in as Text, never markup.
"""

from __future__ import annotations

from rich.text import Text
from textual.app import ComposeResult
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import DataTable, Label
from textual.widgets.data_table import RowKey

from tui_gpt.app import keymap

COLUMNS = ("shown", "run", "started", "kind", "differs from this run", "status", "steps", "val", "bpb")
SHOWN = "✓"


class RunsScreen(ModalScreen[set[int]]):
    """Space or enter shows or hides the run under the cursor; escape closes with those shown."""

    BINDINGS = keymap.bindings_of(keymap.RUNS)

    def __init__(self, rows: list[tuple[int, tuple[str, ...]]], shown: set[int], title: str) -> None:
        super().__init__()
        self.rows = rows  # (run id, its cells after the first), newest first
        self.shown = set(shown)
        self.title_text = title

    def compose(self) -> ComposeResult:
        with Vertical(id="runs-body") as body:
            body.border_title = self.title_text
            yield DataTable(id="runs-table", cursor_type="row", zebra_stripes=True)
            hint = "space or enter: show or hide on the loss chart · escape: close"
            yield Label(hint if self.rows else "No earlier runs on this text yet.", id="runs-hint", markup=False)

    def on_mount(self) -> None:
        table = self.query_one(DataTable)
        for name in COLUMNS:
            table.add_column(name, key=name)
        for run_id, cells in self.rows:
            mark = SHOWN if run_id in self.shown else ""
            table.add_row(mark, *(Text(cell) for cell in cells), key=str(run_id))
        table.focus()

    def on_data_table_row_selected(self, event: DataTable.RowSelected) -> None:
        event.stop()
        self._flip(event.row_key)

    def action_flip(self) -> None:
        table = self.query_one(DataTable)
        if table.row_count:
            self._flip(table.coordinate_to_cell_key(table.cursor_coordinate).row_key)

    def _flip(self, key: RowKey) -> None:
        run_id = int(key.value or 0)
        self.shown ^= {run_id}
        self.query_one(DataTable).update_cell(key, "shown", SHOWN if run_id in self.shown else "")

    def action_close(self) -> None:
        self.dismiss(self.shown)
