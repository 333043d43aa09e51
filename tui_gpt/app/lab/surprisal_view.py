"""Surprisal colouring: every token of a text coloured by the rank the model gave it.

Left and right select a token and show the model's top-k at that position; `b` switches
between rank and probability buckets; `e` edits the bucket edges.
"""

from __future__ import annotations

import itertools
from typing import TYPE_CHECKING, Any

from rich.style import Style
from rich.text import Text
from textual.app import ComposeResult
from textual.containers import VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Static

from tui_gpt.app import keymap
from tui_gpt.app.lab import Experiment
from tui_gpt.app.screens.ask import AskScreen, Refused
from tui_gpt.app.screens.choice import ChoiceScreen
from tui_gpt.probes.surprisal import (
    DEFAULT_PROB_EDGES,
    DEFAULT_RANK_EDGES,
    PALETTE,
    parse_edges,
    prob_bucket,
    rank_bucket,
)
from tui_gpt.visible import visible

if TYPE_CHECKING:
    from tui_gpt.app.lab.memorization_view import MemorizationExperiment
    from tui_gpt.app.state import Doors
    from tui_gpt.probes.replica import Replica


class SurprisalScreen(ModalScreen[None]):
    BINDINGS = keymap.bindings_of(keymap.SURPRISAL)

    def __init__(self, replica: Replica, text: str, source: str) -> None:
        super().__init__()
        self.replica = replica
        self.source = source
        view = replica.surprisal(text)  # one forward pass over exactly the tokens the model sees
        self.ids = view.ids
        self.rows = view.examples
        self.top = view.top  # top[t - 1]: the guesses before token t
        self.by_rank = True
        self.rank_edges: tuple[int, ...] = DEFAULT_RANK_EDGES
        self.selected = max(1, len(self.ids) - 1)

    def compose(self) -> ComposeResult:
        with VerticalScroll(id="surprisal-body") as body:
            body.border_title = f"Surprisal · {self.source}"
            yield Static(id="surprisal-text")
            yield Static(id="surprisal-legend")
            yield Static(id="surprisal-topk")

    def on_mount(self) -> None:
        self._draw()

    def _bucket(self, row: Any) -> int:
        return rank_bucket(row.rank, self.rank_edges) if self.by_rank else prob_bucket(row.prob)

    def _draw(self) -> None:
        texts = self.replica.tokenizer.token_texts
        out = Text()
        if not self.rows:
            out.append("type at least two tokens to colour them", style="dim")
        else:
            out.append(texts[self.ids[0]], style="dim")
            for r in self.rows:
                colour = PALETTE[self._bucket(r)]
                style = Style(color="black", bgcolor=colour)
                if r.position == self.selected:
                    style += Style(underline=True, bold=True, reverse=True)
                out.append(texts[self.ids[r.position]], style=style)
        self.query_one("#surprisal-text", Static).update(out)
        legend = Text("buckets: ")
        labels = self._labels()
        for colour, label in zip(PALETTE, labels, strict=False):
            legend.append(f" {label} ", style=Style(color="black", bgcolor=colour))
            legend.append(" ")
        legend.append("  ←/→ select · b rank/prob · e edit buckets", style="dim")
        self.query_one("#surprisal-legend", Static).update(legend)
        self._draw_topk()

    def _labels(self) -> list[str]:
        if not self.by_rank:
            e = DEFAULT_PROB_EDGES
            return [f"p≥{e[0]:g}", *(f"p≥{x:g}" for x in e[1:]), f"p<{e[-1]:g}"]
        e = self.rank_edges
        labels = ["rank 1" if e[0] == 1 else f"rank ≤{e[0]}"]
        labels += [f"rank {a + 1}-{b}" for a, b in itertools.pairwise(e)]
        return [*labels, f"rank >{e[-1]}"]

    def _draw_topk(self) -> None:
        out = Text()
        if self.rows:
            row = self.rows[self.selected - 1]
            texts = self.replica.tokenizer.token_texts
            prefix = visible(self.replica.tokenizer.decode(self.ids[: self.selected]))[-40:]
            out.append(f"\n…{prefix} → ", style="dim")
            out.append(visible(texts[self.ids[self.selected]]), style="bold")
            out.append(f"   p={row.prob:.3f}  -log p={row.nll:.2f}  rank {row.rank}\n")
            for i, p in self.top[self.selected - 1]:
                mark = "◆" if i == self.ids[self.selected] else " "
                out.append(f" {mark} {visible(texts[i]):<12} {p:7.1%}\n")
        self.query_one("#surprisal-topk", Static).update(out)

    def action_move(self, delta: int) -> None:
        if self.rows:
            self.selected = min(len(self.ids) - 1, max(1, self.selected + delta))
            self._draw()

    def action_toggle_buckets(self) -> None:
        self.by_rank = not self.by_rank
        self._draw()

    def action_edit_edges(self) -> None:
        def parse(value: str) -> tuple[int, ...] | Refused:
            try:
                return parse_edges(value)
            except ValueError as exc:
                return Refused(str(exc))

        def done(edges: tuple[int, ...] | None) -> None:
            if edges is not None:
                self.rank_edges = edges
                self.by_rank = True
                self._draw()

        current = ", ".join(map(str, self.rank_edges))
        self.app.push_screen(AskScreen("Rank bucket edges (increasing, e.g. 1, 3, 10, 100)", current, parse), done)


class SurprisalExperiment(Experiment):
    def __init__(self, doors: Doors, memorization: MemorizationExperiment) -> None:
        super().__init__(doors)
        self.memorization = memorization  # its last sample is one of the texts to colour

    def start(self) -> None:
        ui, run = self.ui, self.run
        if run.replica is None:
            return
        passages = run.passages()
        sample = self.memorization.last_sample
        sources = [("prompt", "The prompt")]
        if passages:
            sources.append(("passage", "A corpus passage"))
        if sample:
            sources.append(("sample", "The last sample"))

        def chosen(which: str | None) -> None:
            text = {"prompt": self.prompt.value, "passage": passages[0] if passages else "", "sample": sample or ""}
            if which in text and run.replica is not None:
                ui.push_screen(SurprisalScreen(run.replica, text[which], dict(sources)[which].lower()))

        ui.push_screen(ChoiceScreen("Colour which text by surprisal?", sources), chosen)
