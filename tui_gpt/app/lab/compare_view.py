"""Experiment: another checkpoint beside this run. Which checkpoint is better?"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from rich.console import Group
from rich.markup import escape
from rich.table import Table
from rich.text import Text

from tui_gpt.app.lab import Experiment, stack
from tui_gpt.app.screens.ask import AskScreen, Refused, parse_existing
from tui_gpt.app.screens.page import PageScreen
from tui_gpt.visible import cell

if TYPE_CHECKING:
    from tui_gpt.probes.compare import Comparison
    from tui_gpt.probes.replica import Replica


def parse_checkpoint(value: str) -> str | Refused:
    """A checkpoint folder (one holding config.json), `~` expanded; or why not."""
    return parse_existing(value, "config.json", "not a checkpoint")


class CompareExperiment(Experiment):
    def start(self) -> None:
        ui, run = self.ui, self.run

        def done(value: str | None) -> None:
            if value and run.replica is not None:
                page = PageScreen("Compare checkpoints", Text("loading and evaluating…", style="dim"))
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

    def _compare(self, replica: Replica, path: str, prompt: str, sources: list[str], k: int, page: PageScreen) -> None:
        body: Group | Text
        try:
            body = report(replica.compare(path, prompt, sources, k), prompt)
        except Exception as exc:  # shown, never raised: the app keeps working
            body = Text(f"could not compare: {exc}", style="bold red")
        self.ui.call_from_thread(self._show, page, body)

    def _show(self, page: PageScreen, body: Group | Text) -> None:
        if page in self.ui.screen_stack:  # not closed while the work ran
            page.update(body)


def better_per_byte(c: Comparison, name: str) -> str:
    """Which side predicts the text better, per byte."""
    a, b = c.this.val_bpb, c.other.val_bpb
    if abs(a - b) < 5e-4:
        return "equal per byte"
    return f"{'this run' if a < b else name} is better per byte, by {abs(a - b):.3f} bits"


def report(c: Comparison, prompt: str) -> Group:
    """Both top-k lists, both val losses, and the per-token surprisal where the tokens line up."""
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
