"""The next-token pane: one bar per guess, with its probability and logit."""

from __future__ import annotations

from rich.text import Text
from textual.reactive import reactive
from textual.widget import Widget

from tui_gpt.visible import visible


class TopKBars(Widget):
    """Top-k next tokens as bars. `guesses` is a list of probe.Guess."""

    COMPONENT_CLASSES = {"topk--bar", "topk--best", "topk--target"}

    guesses: reactive[list] = reactive(list, always_update=True)
    temperature: reactive[float] = reactive(1.0)
    k: reactive[int] = reactive(10)
    target: reactive[int | None] = reactive(None)  # a token id to mark, if any

    def watch_temperature(self) -> None:
        self._title()

    def watch_k(self) -> None:
        self._title()

    def on_mount(self) -> None:
        self._title()

    def _title(self) -> None:
        self.border_title = f"Next token · T={self.temperature:.2f} · k={self.k}"

    def render(self) -> Text:
        if not self.guesses:
            return Text("waiting for the model…", style="dim")
        width = max(10, self.size.width)
        label_w = min(14, max(6, max(len(visible(g.text)) for g in self.guesses) + 2))
        bar_w = max(4, width - label_w - 3 - 7 - 9)
        out = Text(no_wrap=True, overflow="ellipsis")
        top = max(g.prob for g in self.guesses) or 1.0
        bar_style = self.get_component_rich_style("topk--bar")
        best_style = self.get_component_rich_style("topk--best")
        target_style = self.get_component_rich_style("topk--target")
        for rank, g in enumerate(self.guesses, 1):
            label = visible(g.text)
            if len(label) > label_w - 1:
                label = label[: label_w - 2] + "…"
            mark = "◆" if g.id == self.target else " "
            out.append(f"{rank:>2}{mark}", style="dim")
            out.append(f"{label:<{label_w}}", style=target_style if g.id == self.target else "bold")
            filled = g.prob / top * bar_w
            full = int(filled)
            bar = "█" * full + ("▌" if filled - full >= 0.5 else "")
            out.append(f"{bar:<{bar_w}}", style=best_style if rank == 1 else bar_style)
            out.append(f"{g.prob:7.1%}")
            out.append(f"{g.logit:9.2f}\n", style="dim")
        out.rstrip()
        return out
