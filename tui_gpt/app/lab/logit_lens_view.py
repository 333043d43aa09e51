"""The logit lens view: each layer's top next words or tokens after a prompt, as a layers x top-k table.

Its own prompt (the app's, to start with) redraws the table on every key, and a new set of
weights redraws it too: the learner watches the guess form in the last layer first, then move
to earlier ones as training goes on. It opens in the app's words or tokens, and ctrl+f flips it
(as in the app). Tokens are one forward pass, drawn in the key's frame; words are a next-word search
per layer, on a worker thread: a new key cancels it, and the last table stays until the next is found.
"""

from __future__ import annotations

from functools import partial
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
    from tui_gpt.app.prompt_probes import Probes
    from tui_gpt.app.state import Doors, LiveRun
    from tui_gpt.probes.logit_lens import LensWords, LogitLens
    from tui_gpt.probes.replica import Replica

POLL_S = 0.25  # how often the view looks for new weights
NOTE = (
    "Each row is the residual stream after that layer, read out through the final layer norm and the head, "
    "as if the model ended there. Bold: the model's own top {what}; p final: its probability at that layer."
)
WORDS_NOTE = " Words: the Next word pane's search on each layer's reading (* cut short: a word may be missing)."


class LogitLensScreen(ModalScreen[None]):
    BINDINGS = keymap.bindings_of(keymap.LOGIT_LENS)
    DEFAULT_CSS = """
    LogitLensScreen { align: center middle; }
    #lens-body { width: 150; max-width: 95%; height: auto; max-height: 90%;
                 border: round $accent; background: $panel; padding: 0 1; }
    #lens-prompt { margin-bottom: 1; }
    """

    def __init__(self, live: LiveRun, text: str, k: int, by_word: bool = False) -> None:
        super().__init__()
        self.live, self.text, self.k, self.by_word = live, text, k, by_word
        self.replica = live.replica  # the one the view opened with, while a reset builds the next
        # (replica, step, text, by_word) of the table on screen, and of the word search in flight
        self.shown: tuple[int, int, str, bool] | None = None
        self.searching: tuple[int, int, str, bool] | None = None
        self.generation = 0  # bumped by a new key, ctrl+f or closing: a word search of an older one gives up
        self.last: LogitLens | None = None
        self.last_words: LensWords | None = None

    def compose(self) -> ComposeResult:
        with VerticalScroll(id="lens-body") as body:
            body.border_title = "Logit lens · what each layer thinks comes next"
            yield Input(self.text, id="lens-prompt", placeholder="type a prompt", select_on_focus=False)
            yield Static(id="lens-table")
            yield Static(id="lens-note")

    def on_mount(self) -> None:
        prompt = self.query_one(Input)
        prompt.focus()
        prompt.cursor_position = len(prompt.value)  # typing goes on at the end, as in the app's prompt
        self.redraw()
        self.set_interval(POLL_S, self.redraw)  # weight updates: cheap when nothing changed

    def on_unmount(self) -> None:
        self.generation += 1  # a search in flight gives up after its current forward pass

    def on_input_changed(self, event: Input.Changed) -> None:
        self.text = event.value
        self.redraw()

    def action_words(self) -> None:
        """Words <-> tokens, as ctrl+f does in the app."""
        self.by_word = not self.by_word
        self.redraw()

    def current_replica(self) -> Replica:
        """The app's replica (a reset makes a new one), or the one the view opened with."""
        replica = self.live.replica or self.replica
        assert replica is not None, "the view opens only on a ready run"
        return replica

    def redraw(self) -> None:
        replica = self.current_replica()
        key = (id(replica), replica.step, self.text, self.by_word)
        if key == self.shown or key == self.searching:
            return
        if self.by_word:
            self._search(replica, key)
            return
        self.generation += 1  # tokens now: a word search in flight is not wanted
        self.searching = None
        self.shown = key
        self.last = replica.logit_lens(self.text, self.k)
        self.query_one("#lens-table", Static).update(self.table(self.last, replica.tokenizer.token_texts, replica.step))
        self._note()

    def _search(self, replica: Replica, key: tuple[int, int, str, bool]) -> None:
        """Start the word search for `key`, unless one for the same text is in flight (new weights wait for it)."""
        if self.searching is not None and self.searching[2:] == key[2:] and self.searching[0] == key[0]:
            return  # only the weights moved: the search in flight finishes, then the poll starts the next
        self.generation += 1
        self.searching = key
        self._note()
        work = partial(self._find_words, replica, key, self.generation, self.k)
        self.run_worker(work, thread=True, exclusive=True, group="lens-words", exit_on_error=False)

    def _find_words(self, replica: Replica, key: tuple[int, int, str, bool], generation: int, k: int) -> None:
        found = replica.lens_words(key[2], k, lambda: generation != self.generation)
        if found is not None and generation == self.generation:
            self.app.call_from_thread(self._show_words, key, generation, found)

    def _show_words(self, key: tuple[int, int, str, bool], generation: int, found: LensWords) -> None:
        if generation != self.generation or self.live.leaving:
            return  # a newer key or ctrl+f: the table keeps the last complete answer until the newest arrives
        self.searching, self.shown, self.last_words = None, key, found
        self.query_one("#lens-table", Static).update(self.words_table(found, key[1]))
        self._note()

    def _note(self) -> None:
        what = "word" if self.by_word else "token"
        note = NOTE.format(what=what) + (WORDS_NOTE if self.by_word else "") + "  ctrl+f words/tokens · esc closes."
        text = Text(note, style="dim")
        if self.by_word and self.searching is not None:
            text = Text.assemble(("searching each layer's next words…  ", "italic"), text)
        self.query_one("#lens-note", Static).update(text)

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

    @staticmethod
    def words_table(view: LensWords, step: int) -> Table:
        last = view.rows[-1]
        what = f"rest of {visible(last.typed)!r}" if last.typed.strip() else "next word"
        table = Table(title=f"{what} after the last of {last.context} tokens · step {step:,}", expand=False)
        table.add_column("layer")
        k = max(len(row.words) for row in view.rows)
        for i in range(1, k + 1):
            table.add_column(f"top {i}")
        table.add_column("other", justify="right")
        table.add_column("p final", justify="right")
        for layer, row in enumerate(view.rows):
            cells = []
            for w in row.words:
                style = "bold" if w.text == view.final else ""
                cells.append(Text.assemble((visible(w.text), style), (f" {w.prob:.2f}", "dim")))
            cells += [Text("")] * (k - len(cells))
            p = view.final_prob(layer)
            final = f"{p:.3f}" if p is not None else f"< {row.words[-1].prob:.3f}" if row.words else ""
            name = ("embed" if layer == 0 else f"layer {layer}") + (" *" if row.cut else "")
            table.add_row(name, *cells, f"{row.other:.2f}", final)
        return table


class LogitLensExperiment(Experiment):
    def __init__(self, doors: Doors, probes: Probes) -> None:
        super().__init__(doors)
        self.probes = probes  # whose words or tokens the view opens in

    def start(self) -> None:
        if self.run.replica is not None:
            screen = LogitLensScreen(self.run, self.prompt.value, self.settings.top_k, self.probes.by_word)
            self.ui.push_screen(screen)
