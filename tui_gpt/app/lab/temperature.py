"""Experiment: logits, logits / T and the softmax side by side. What does temperature do?"""

from __future__ import annotations

from rich.table import Table
from rich.text import Text

from tui_gpt.app.lab import Experiment, stack
from tui_gpt.app.screens.page import PageScreen
from tui_gpt.visible import cell

NOTE = "\nDividing by T > 1 flattens the distribution (more surprising samples); T < 1 sharpens it. ↑/↓ change T."


class TemperatureExperiment(Experiment):
    def start(self) -> None:
        replica = self.run.replica
        if replica is None:
            return
        t = self.settings.temperature
        rows = replica.temperature(self.prompt.value, t, self.settings.top_k)
        texts = replica.tokenizer.token_texts
        table = Table(title=f"logits → logits / T (T = {t:g}) → softmax", expand=False)
        for col in ("token", "logit", f"logit / {t:g}", "softmax p"):
            table.add_column(col, justify="right")
        for r in rows:
            table.add_row(cell(texts[r.id]), f"{r.logit:.3f}", f"{r.scaled:.3f}", f"{r.prob:.2%}")
        self.ui.push_screen(PageScreen("Temperature view", stack(table, Text(NOTE, style="dim"))))
