"""The logit lens view: each layer's top next tokens after a prompt, as a layers x top-k table.

Its own prompt (the app's, to start with) redraws the table on every key, and a new set of
weights redraws it too: the learner watches the guess form in the last layer first, then move
to earlier ones as training goes on.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from rich.table import Table
from rich.text import Text
from textual.app import ComposeResult
from textual.containers import VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Input, Static

from tui_gpt.app import keymap
from tui_gpt.app.lab import Experiment
from tui_gpt.visible import visible

if TYPE_CHECKING:
    from tui_gpt.app.state import LiveRun
    from tui_gpt.probes.logit_lens import LogitLens
    from tui_gpt.probes.replica import Replica

POLL_S = 0.25  # how often the view looks for new weights
NOTE = (
    "Each row is the residual stream after that layer, read out through the final layer norm and the head, "
    "as if the model ended there. Bold: the model's own top token; p final: its probability at that layer."
)


class LogitLensScreen(ModalScreen[None]):
    BINDINGS = keymap.bindings_of(keymap.LOGIT_LENS)
    DEFAULT_CSS = """
    LogitLensScreen { align: center middle; }
    #lens-body { width: 150; max-width: 95%; height: auto; max-height: 90%;
                 border: round $accent; background: $panel; padding: 0 1; }
    #lens-prompt { margin-bottom: 1; }
    """

    def __init__(self, live: LiveRun, text: str, k: int) -> None:
        super().__init__()
        self.live, self.text, self.k = live, text, k
        self.replica = live.replica  # the one the view opened with, while a reset builds the next
        self.shown: tuple[int, int, str] | None = None  # (replica, step, text) of the table on screen
        self.last: LogitLens | None = None

    def compose(self) -> ComposeResult:
        with VerticalScroll(id="lens-body") as body:
            body.border_title = "Logit lens · what each layer thinks comes next"
            yield Input(self.text, id="lens-prompt", placeholder="type a prompt", select_on_focus=False)
            yield Static(id="lens-table")
            yield Static(Text(NOTE + "  esc closes.", style="dim"), id="lens-note")

    def on_mount(self) -> None:
        prompt = self.query_one(Input)
        prompt.focus()
        prompt.cursor_position = len(prompt.value)  # typing goes on at the end, as in the app's prompt
        self.redraw()
        self.set_interval(POLL_S, self.redraw)  # weight updates: cheap when nothing changed

    def on_input_changed(self, event: Input.Changed) -> None:
        self.text = event.value
        self.redraw()

    def current_replica(self) -> Replica:
        """The app's replica (a reset makes a new one), or the one the view opened with."""
        replica = self.live.replica or self.replica
        assert replica is not None, "the view opens only on a ready run"
        return replica

    def redraw(self) -> None:
        replica = self.current_replica()
        key = (id(replica), replica.step, self.text)
        if key == self.shown:
            return
        self.shown = key
        self.last = replica.logit_lens(self.text, self.k)
        self.query_one("#lens-table", Static).update(self.table(self.last, replica.tokenizer.token_texts, replica.step))

    @staticmethod
    def table(view: LogitLens, texts: list[str], step: int) -> Table:
        table = Table(title=f"next token after the last of {len(view.ids)} tokens · step {step:,}", expand=False)
        table.add_column("layer")
        for i in range(1, len(view.rows[0].guesses) + 1):
            table.add_column(f"top {i}")
        table.add_column("p final", justify="right")
        for row in view.rows:
            cells = []
            for g in row.guesses:
                style = "bold" if g.id == view.final_id else ""
                cells.append(Text.assemble((visible(texts[g.id]), style), (f" {g.prob:.2f}", "dim")))
            table.add_row("embed" if row.layer == 0 else f"layer {row.layer}", *cells, f"{row.final_prob:.3f}")
        return table


class LogitLensExperiment(Experiment):
    def start(self) -> None:
        if self.run.replica is not None:
            self.ui.push_screen(LogitLensScreen(self.run, self.prompt.value, self.settings.top_k))
