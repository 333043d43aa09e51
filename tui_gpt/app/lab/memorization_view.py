"""Experiment: sample, and mark every span copied verbatim from the training text. Is this sample memorized?"""

from __future__ import annotations

from typing import TYPE_CHECKING

from rich.console import Group
from rich.style import Style
from rich.text import Text

from tui_gpt.app.lab import Experiment, stack
from tui_gpt.app.screens.page import PageScreen
from tui_gpt.link.protocol import Memorize, Memorized

if TYPE_CHECKING:
    from tui_gpt.probes.replica import Replica

SAMPLE_TOKENS = 200
MIN_MATCH = {"char": 16, "bpe": 6, "word": 4}  # tokens: roughly three or four words


class MemorizationExperiment(Experiment):
    replies = (Memorized,)
    last_sample: str | None = None  # the last sample, for surprisal colouring

    def start(self) -> None:
        ui, replica = self.ui, self.run.replica
        if replica is None:
            return
        self.page = PageScreen("Memorization check", Text("sampling…", style="dim"))
        ui.push_screen(self.page)
        prompt = self.prompt.value
        ui.run_worker(
            lambda: self._sample(replica, prompt), thread=True, exclusive=True, group="memo", exit_on_error=False
        )

    def _sample(self, replica: Replica, prompt: str) -> None:
        ids = replica.sample(prompt, SAMPLE_TOKENS, temperature=0.8, seed=0) or []  # never cancelled: never None
        self.last_sample = replica.tokenizer.decode(ids)
        n = MIN_MATCH.get(replica.tokenizer.kind, 8)
        self.ui.call_from_thread(self.client.send, Memorize(ids, n))

    def mark(self) -> Style:
        """The highlight of copied tokens, from the theme, so it reads in light and dark themes alike."""
        variables = self.ui.get_css_variables()
        return Style(bold=True, color=variables["foreground"], bgcolor=variables["warning-muted"])

    def render_reply(self, event: Memorized) -> Group:
        out = Text()
        replica = self.run.replica
        if replica is None:
            return stack(out)
        texts = replica.tokenizer.token_texts
        inside = [False] * len(event.ids)
        for a, b in event.spans:
            inside[a:b] = [True] * (b - a)
        mark = self.mark()
        for i, t in enumerate(event.ids):
            out.append(texts[t], style=mark if inside[i] else "")
        covered = sum(inside)
        spans = f"{len(event.spans)} span{'' if len(event.spans) == 1 else 's'}"
        summary = Text(
            f"\n\n{spans} copied verbatim from the training text (highlighted; at least {event.min_len} "
            f"tokens each), covering {covered}/{len(event.ids)} tokens ({covered / max(1, len(event.ids)):.0%}).",
            style="bold",
        )
        return stack(out, summary)
