"""Experiment: the exact ids the model sees, and the text's length under char, bpe and word."""

from __future__ import annotations

from rich.table import Table
from rich.text import Text

from tui_gpt.app.lab import Experiment, stack
from tui_gpt.app.screens.page import PageScreen
from tui_gpt.link.protocol import CountTokens, TokenCounts
from tui_gpt.visible import cell


class TokensExperiment(Experiment):
    replies = (TokenCounts,)

    def start(self) -> None:
        replica = self.run.replica
        if replica is None:
            return
        text = self.prompt.value
        infos = replica.describe(text)
        table = Table(title=f"{len(infos)} {replica.tokenizer.kind} tokens: what the model sees", expand=False)
        for col in ("#", "id", "token", "note"):
            table.add_column(col)
        for i, info in enumerate(infos):
            note = "special" if info.special else ("byte fragment" if info.fragment else "")
            table.add_row(str(i), str(info.id), cell(info.text), note)
        self.table = table
        self.page = PageScreen("Tokenizer view", Text("counting tokens under char, bpe and word…", style="dim"))
        self.ui.push_screen(self.page)
        self.client.send(CountTokens(text))

    def render_reply(self, event: TokenCounts) -> object:
        counts = Table(title="the same text under each tokenizer", expand=False)
        counts.add_column("tokenizer")
        counts.add_column("tokens", justify="right")
        replica = self.run.replica
        for kind, n in event.counts.items():
            counts.add_row(kind + (" (this run)" if replica and kind == replica.tokenizer.kind else ""), str(n))
        return stack(self.table, counts)
