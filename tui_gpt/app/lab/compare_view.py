"""Experiment: another checkpoint beside this run. Which checkpoint is better?

The prompt's surprisal is shown per token (where both tokenizers split it alike) or per word (words
are text, so they line up across tokenizers); the page opens in the app's words or tokens, and
ctrl+f flips it.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from rich.console import Group
from rich.markup import escape
from rich.table import Table
from rich.text import Text

from tui_gpt.app import keymap
from tui_gpt.app.lab import Experiment, stack
from tui_gpt.app.screens.ask import AskScreen, Refused, parse_existing
from tui_gpt.app.screens.page import PageScreen
from tui_gpt.visible import cell

if TYPE_CHECKING:
    from tui_gpt.app.prompt_probes import Probes
    from tui_gpt.app.state import Doors
    from tui_gpt.probes.compare import Comparison
    from tui_gpt.probes.replica import Replica


def parse_checkpoint(value: str) -> str | Refused:
    """A checkpoint folder (one holding config.json), `~` expanded; or why not."""
    return parse_existing(value, "config.json", "not a checkpoint")


class ComparePage(PageScreen):
    """The comparison's page: ctrl+f redraws it per word or per token."""

    BINDINGS = keymap.bindings_of(keymap.COMPARE)

    def __init__(self, by_word: bool) -> None:
        super().__init__("Compare checkpoints", Text("loading and evaluating…", style="dim"))
        self.by_word = by_word
        self.shown: tuple[Comparison, str] | None = None  # the comparison on the page, and its prompt

    def show(self, comparison: Comparison, prompt: str, body: Group) -> None:
        self.shown = (comparison, prompt)
        self.update(body)

    def action_words(self) -> None:
        """Words <-> tokens, as ctrl+f does in the app."""
        self.by_word = not self.by_word
        if self.shown is not None:
            self.update(report(*self.shown, by_word=self.by_word))


class CompareExperiment(Experiment):
    def __init__(self, doors: Doors, probes: Probes) -> None:
        super().__init__(doors)
        self.probes = probes  # whose words or tokens the page opens in

    def start(self) -> None:
        ui, run = self.ui, self.run

        def done(value: str | None) -> None:
            if value and run.replica is not None:
                page = ComparePage(self.probes.by_word)
                ui.push_screen(page)
                replica, prompt, sources, k = run.replica, self.prompt.value, run.spec.sources, self.settings.top_k
                ui.run_worker(
                    lambda: self._compare(replica, value, prompt, sources, k, page),
                    thread=True,
                    exclusive=True,
                    group="compare",
                    exit_on_error=False,
                )

        ui.push_screen(AskScreen("Compare with which checkpoint directory?", run.out, parse_checkpoint), done)

    def _compare(self, replica: Replica, path: str, prompt: str, sources: list[str], k: int, page: ComparePage) -> None:
        try:
            comparison = replica.compare(path, prompt, sources, k)
            body = report(comparison, prompt, page.by_word)
        except Exception as exc:  # shown, never raised: the app keeps working
            self.ui.call_from_thread(self._failed, page, Text(f"could not compare: {exc}", style="bold red"))
            return
        self.ui.call_from_thread(self._show, page, comparison, prompt, body)

    def _show(self, page: ComparePage, comparison: Comparison, prompt: str, body: Group) -> None:
        if page in self.ui.screen_stack:  # not closed while the work ran
            page.show(comparison, prompt, body)

    def _failed(self, page: ComparePage, body: Text) -> None:
        if page in self.ui.screen_stack:
            page.update(body)


def better_per_byte(c: Comparison, name: str) -> str:
    """Which side predicts the text better, per byte."""
    a, b = c.this.val_bpb, c.other.val_bpb
    if abs(a - b) < 5e-4:
        return "equal per byte"
    return f"{'this run' if a < b else name} is better per byte, by {abs(a - b):.3f} bits"


def report(c: Comparison, prompt: str, by_word: bool = False) -> Group:
    """Both top-k lists, both val losses, and the prompt's surprisal per word, or per token where the tokens line up."""
    name = Path(c.other.name).name
    # The prompt and the folder's name are the user's: escaped, never read as markup.
    top = Table(title=f"next token after {escape(repr(prompt[-40:]))}", expand=False)
    for side in (c.this, c.other):
        top.add_column(escape(f"{side.name} ({side.kind})"))
        top.add_column("p", justify="right")
    pairs = zip(c.this.analysis.prediction.guesses, c.other.analysis.prediction.guesses, strict=False)
    for a, b in pairs:
        top.add_row(cell(a.text), f"{a.prob:.3f}", cell(b.text), f"{b.prob:.3f}")
    losses = Text(
        f"\nvalidation loss: this run {c.this.val_loss:.3f} · {name} {c.other.val_loss:.3f}"
        "  (fixed batches of this run's text; comparable when both use the same tokenizer kind)\n"
        f"bits per byte:   this run {c.this.val_bpb:.3f} · {name} {c.other.val_bpb:.3f}"
        f"  (the same loss per byte of text: comparable across tokenizers) · {better_per_byte(c, name)}\n",
        style="bold",
    )
    parts: list[Any] = [top, losses]
    if by_word:
        return stack(*parts, word_table(c, name))
    rows_a, rows_b = c.this.analysis.examples, c.other.analysis.examples
    if rows_a and c.same_tokens and [a.target for a in rows_a] == [b.target for b in rows_b]:
        diff = Table(title="surprisal per token of the prompt (-log p)", expand=False)
        for col in ("token", "this run", escape(name), "difference"):
            diff.add_column(col, justify="right")
        for ra, rb in zip(rows_a, rows_b, strict=True):
            diff.add_row(cell(c.token_texts[ra.target]), f"{ra.nll:.2f}", f"{rb.nll:.2f}", f"{rb.nll - ra.nll:+.2f}")
        parts.append(diff)
    elif rows_a:
        parts.append(Text("the two tokenizers split the prompt differently: no per-token comparison", style="dim"))
    return stack(*parts)


def word_table(c: Comparison, name: str) -> Table | Text:
    """The prompt's words that both sides predicted whole: each side's p(word | prefix) and -log p."""
    pairs = c.word_pairs()
    if not pairs:
        return Text("type at least two words: the first has nothing before it to predict it from", style="dim")
    diff = Table(title="surprisal per word of the prompt (-log p(word) = the sum of its tokens')", expand=False)
    for col in ("word", "p this run", "-log p", escape(f"p {name}"), "-log p", "difference"):
        diff.add_column(col, justify="right")
    for a, b in pairs:
        diff.add_row(
            cell(a.text), f"{a.prob:.3f}", f"{a.nll:.2f}", f"{b.prob:.3f}", f"{b.nll:.2f}", f"{b.nll - a.nll:+.2f}"
        )
    return diff
