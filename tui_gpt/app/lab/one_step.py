"""Experiment: one optimizer step on one example, before and after. What does one gradient step do?"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

from rich.table import Table
from rich.text import Text

from tui_gpt.app.lab import Experiment, stack
from tui_gpt.app.screens.page import PageScreen
from tui_gpt.link.protocol import ExampleStepped, StepOn
from tui_gpt.visible import cell, visible

if TYPE_CHECKING:
    from rich.console import JustifyMethod

    from tui_gpt.app.lab.pin import PinExperiment
    from tui_gpt.app.state import Doors

NOTE = "\nOne optimizer step nudged every weight toward this example; the run's step count is unchanged."


class OneStepExperiment(Experiment):
    replies = (ExampleStepped,)
    ids: list[int] = []  # the example sent: ids[:-1] -> ids[-1]

    def __init__(self, doors: Doors, pin: PinExperiment) -> None:
        super().__init__(doors)
        self.pin = pin  # the pinned example, if any, is the one stepped on

    def start(self) -> None:
        ui, replica = self.ui, self.run.replica
        if replica is None:
            return
        tok = replica.tokenizer
        pinned = self.pin.pinned
        ids = [*pinned["ids"], pinned["target"]] if pinned else tok.encode(self.prompt.value)
        if len(ids) < 2:
            ui.notify("Type a prompt of at least two tokens: its last token is the target.", severity="warning")
            return
        self.ids = ids
        self.page = PageScreen(
            "One step on one example",
            Text(f"{visible(tok.decode(ids[:-1]))} → {visible(tok.token_texts[ids[-1]])}: stepping…"),
        )
        ui.push_screen(self.page)
        self.client.send(StepOn(ids))

    def render_reply(self, event: ExampleStepped) -> object:
        head = Text()
        replica = self.run.replica
        if replica is not None:
            head.append(f"{visible(replica.tokenizer.decode(self.ids[:-1]))} → ", style="dim")
            head.append(visible(replica.tokenizer.token_texts[event.target]) + "\n\n", style="bold")
        before, after = (-math.log(max(p, 1e-12)) for p in (event.p_before, event.p_after))
        head.append(f"p(target): {event.p_before:.4f} → {event.p_after:.4f}\n", style="bold")
        head.append(f"loss -log p: {before:.3f} → {after:.3f}\n\n")
        table = Table(title="top guesses before and after", expand=False)
        columns: tuple[tuple[str, JustifyMethod], ...] = (
            ("before", "left"),
            ("p", "right"),
            ("after", "left"),
            ("p", "right"),
        )
        for col, justify in columns:
            table.add_column(col, justify=justify)
        for (tb, pb), (ta, pa) in zip(event.top_before, event.top_after, strict=False):
            table.add_row(cell(tb), f"{pb:.3f}", cell(ta), f"{pa:.3f}")
        return stack(head, table, Text(NOTE, style="dim"))
