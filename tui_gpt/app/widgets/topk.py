"""The next-word (or next-token) pane: one bar per guess, with its probability."""

from __future__ import annotations

from typing import Any

from rich.text import Text
from textual.reactive import reactive
from textual.widget import Widget

from tui_gpt.visible import visible


class TopKBars(Widget):
    """Top-k next words or tokens as bars.

    `guesses` is a list of probe.Guess (the token view); `words` is a nextword.NextWords (the word view).
    """

    COMPONENT_CLASSES = {"topk--bar", "topk--best", "topk--target"}

    guesses: reactive[list] = reactive(list, always_update=True)
    words: reactive[Any] = reactive(None, always_update=True)
    by_word: reactive[bool] = reactive(True)
    temperature: reactive[float] = reactive(1.0)
    k: reactive[int] = reactive(10)
    target: reactive[int | None] = reactive(None)  # a token id to mark, if any
    target_word: reactive[str | None] = reactive(None)  # a word to mark, if any

    def watch_temperature(self) -> None:
        self._title()

    def watch_k(self) -> None:
        self._title()

    def watch_by_word(self) -> None:
        self._title()

    def on_mount(self) -> None:
        self._title()

    def _title(self) -> None:
        what = "Next word" if self.by_word else "Next token"
        self.border_title = f"{what} · T={self.temperature:.2f} · k={self.k}"

    def render(self) -> Text:
        return self._render_words() if self.by_word else self._render_tokens()

    def _bars(self, rows: list[tuple[str, float, str]], width: int, mark: int | None = None) -> Text:
        """One line per (label, probability, right-hand columns), the bars scaled to the first."""
        label_w = min(14, max(6, max(len(label) for label, _, _ in rows) + 2))
        right_w = max(len(r) for _, _, r in rows)
        bar_w = max(4, width - label_w - 3 - 7 - right_w)
        out = Text(no_wrap=True, overflow="ellipsis")
        top = max(p for _, p, _ in rows) or 1.0
        bar_style = self.get_component_rich_style("topk--bar")
        best_style = self.get_component_rich_style("topk--best")
        target_style = self.get_component_rich_style("topk--target")
        for rank, (label, p, right) in enumerate(rows, 1):
            if len(label) > label_w - 1:
                label = label[: label_w - 2] + "…"
            out.append(f"{rank:>2}{'◆' if rank == mark else ' '}", style="dim")
            out.append(f"{label:<{label_w}}", style=target_style if rank == mark else "bold")
            filled = p / top * bar_w
            full = int(filled)
            bar = "█" * full + ("▌" if filled - full >= 0.5 else "")
            out.append(f"{bar:<{bar_w}}", style=best_style if rank == 1 else bar_style)
            out.append(f"{p:7.1%}")
            out.append(f"{right}\n", style="dim")
        return out

    def _render_words(self) -> Text:
        res = self.words
        if res is None:
            return Text("finding the likeliest next words…", style="dim")
        width = max(10, self.size.width)
        rows = [(visible(w.text), w.prob, f"{w.nll:8.2f}{w.tokens:4d} tok") for w in res.words]
        mark = next((rank for rank, w in enumerate(res.words, 1) if w.text.strip() == self.target_word), None)
        out = self._bars(rows, width, mark) if rows else Text(no_wrap=True)
        note = f"   other words {res.other:6.1%}"
        if res.typed.strip():
            note += f" · completing {visible(res.typed)!r}"
        if res.cut:
            note += " · search cut: a word not listed may rank higher"
        out.append(note + " · -log p, tokens per word", style="dim")
        return out

    def _render_tokens(self) -> Text:
        if not self.guesses:
            return Text("waiting for the model…", style="dim")
        rows = [(visible(g.text), g.prob, f"{g.logit:9.2f}") for g in self.guesses]
        mark = next((rank for rank, g in enumerate(self.guesses, 1) if g.id == self.target), None)
        out = self._bars(rows, max(10, self.size.width), mark)
        out.rstrip()
        return out
