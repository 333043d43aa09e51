"""Surprisal colouring: every token of a text coloured by the rank the model gave it, or every word by its p.

Left and right select a token and show the model's top-k at that position; `b` switches
between rank and probability buckets; `e` edits the bucket edges. ctrl+f switches to words (as in
the app, whose mode it opens in): a word's -log p is the sum of its tokens', -log p(word | prefix),
and each word is a row with its tokens' share.
"""

from __future__ import annotations

import itertools
import math
from typing import TYPE_CHECKING, Any

from rich.console import Group
from rich.style import Style
from rich.table import Table
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
    from tui_gpt.app.prompt_probes import Probes
    from tui_gpt.app.state import Doors
    from tui_gpt.probes.nextword import WordLoss
    from tui_gpt.probes.replica import Replica


def prob_labels() -> list[str]:
    """The probability buckets' labels, most probable first."""
    e = DEFAULT_PROB_EDGES
    return [f"p≥{e[0]:g}", *(f"p≥{x:g}" for x in e[1:]), f"p<{e[-1]:g}"]


class SurprisalScreen(ModalScreen[None]):
    BINDINGS = keymap.bindings_of(keymap.SURPRISAL)

    def __init__(self, replica: Replica, text: str, source: str, by_word: bool = False) -> None:
        super().__init__()
        self.replica = replica
        self.source = source
        view = replica.surprisal(text)  # one forward pass over exactly the tokens the model sees
        self.ids = view.ids
        self.rows = view.examples
        self.top = view.top  # top[t - 1]: the guesses before token t
        self.words = view.words  # the same tokens by word; a word that starts at ids[0] has no -log p
        self.by_rank = True
        self.by_word = by_word
        self.rank_edges: tuple[int, ...] = DEFAULT_RANK_EDGES
        self.selected = max(1, len(self.ids) - 1)
        self.predicted = [i for i, w in enumerate(self.words) if not math.isnan(w.nll)]  # words that have a p
        self.selected_word = self.predicted[-1] if self.predicted else 0

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
        if self.by_word:
            self._draw_words()
            return
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
        legend.append("  ←/→ select · b rank/prob · e edit buckets · ctrl+f words", style="dim")
        self.query_one("#surprisal-legend", Static).update(legend)
        self._draw_topk()

    def _draw_words(self) -> None:
        """Each word coloured by p(word | prefix), the selected one marked; then one row per word."""
        out = Text()
        if not self.predicted:
            out.append("type at least two words to colour them", style="dim")
        for i, w in enumerate(self.words):
            if math.isnan(w.nll):
                out.append(w.text, style="dim")  # it starts at the first token: nothing before it predicts it
                continue
            style = Style(color="black", bgcolor=PALETTE[prob_bucket(w.prob)])
            if i == self.selected_word:
                style += Style(underline=True, bold=True, reverse=True)
            out.append(w.text, style=style)
        self.query_one("#surprisal-text", Static).update(out)
        legend = Text("buckets of p(word): ")
        for colour, label in zip(PALETTE, prob_labels(), strict=False):
            legend.append(f" {label} ", style=Style(color="black", bgcolor=colour))
            legend.append(" ")
        legend.append("  ←/→ select · ctrl+f tokens", style="dim")
        self.query_one("#surprisal-legend", Static).update(legend)
        self.query_one("#surprisal-topk", Static).update(self._word_rows())

    def _word_rows(self) -> Group:
        """The selected word's tokens adding up to its -log p, then a row per word: p, -log p, tokens."""
        head = Text()
        if self.predicted:
            w = self.words[self.selected_word]
            prefix = visible("".join(x.text for x in self.words[: self.selected_word]))[-40:]
            head.append(f"\n…{prefix} → ", style="dim")
            head.append(visible(w.text), style="bold")
            head.append(f"   p={w.prob:.3f}  -log p={w.nll:.2f} = {self._sum(w)}\n")
        table = Table(title="-log p(word): its tokens' sum", expand=False)
        table.add_column("word")
        for col in ("p", "-log p", "tokens"):
            table.add_column(col, justify="right")
        for i in self.predicted:
            w = self.words[i]
            style = "bold" if i == self.selected_word else ""
            table.add_row(visible(w.text), f"{w.prob:.3f}", f"{w.nll:.2f}", str(w.tokens), style=style)
        return Group(head, table)

    def _sum(self, w: WordLoss) -> str:
        """'·f 2.31 + ox 0.12': each token of `w` and its -log p."""
        texts = self.replica.tokenizer.token_texts
        nll = {r.position: r.nll for r in self.rows}
        parts = [f"{visible(texts[self.ids[t]])} {nll[t]:.2f}" for t in range(w.first, w.first + w.tokens)]
        return " + ".join(parts)

    def _labels(self) -> list[str]:
        if not self.by_rank:
            return prob_labels()
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
        if self.by_word:
            if self.predicted:
                at = self.predicted.index(self.selected_word) + delta
                self.selected_word = self.predicted[min(len(self.predicted) - 1, max(0, at))]
                self._draw()
            return
        if self.rows:
            self.selected = min(len(self.ids) - 1, max(1, self.selected + delta))
            self._draw()

    def action_words(self) -> None:
        """Words <-> tokens, as ctrl+f does in the app."""
        self.by_word = not self.by_word
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
    def __init__(self, doors: Doors, memorization: MemorizationExperiment, probes: Probes) -> None:
        super().__init__(doors)
        self.memorization = memorization  # its last sample is one of the texts to colour
        self.probes = probes  # whose words or tokens the view opens in

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
                source = dict(sources)[which].lower()
                ui.push_screen(SurprisalScreen(run.replica, text[which], source, self.probes.by_word))

        ui.push_screen(ChoiceScreen("Colour which text by surprisal?", sources), chosen)
