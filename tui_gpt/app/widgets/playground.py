"""The playground's panes: the prompt, next tokens and examples on the left; training and attention on the right."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.containers import Horizontal, Vertical

from tui_gpt.app.widgets.attention import AttentionMap
from tui_gpt.app.widgets.examples_pane import ExamplesPane
from tui_gpt.app.widgets.line import InfoLine
from tui_gpt.app.widgets.prompt import PromptInput
from tui_gpt.app.widgets.topk import TopKBars
from tui_gpt.app.widgets.training import TrainingPane


class Playground(Horizontal):
    def __init__(self, prompt: str, **kwargs) -> None:
        super().__init__(**kwargs)
        self.initial_prompt = prompt

    def compose(self) -> ComposeResult:
        with Vertical(id="left"):
            with Vertical(id="prompt-pane"):
                yield PromptInput(
                    value=self.initial_prompt, placeholder="type a prefix…", select_on_focus=False, id="prompt"
                )
                yield InfoLine(id="prompt-info")
                yield InfoLine(id="greedy")
            yield TopKBars(id="topk")
            yield ExamplesPane(id="examples")
        with Vertical(id="right"):
            yield TrainingPane(id="training")
            yield AttentionMap(id="attention")

    def on_mount(self) -> None:
        self.query_one("#prompt-pane").border_title = "Prompt"
        self.query_one(TrainingPane).border_title = "Training"
        self.query_one("#examples").border_title = "Training examples"
        self.query_one(PromptInput).focus()
        # Owned by the pane, so the timers stop when the screen goes away on exit.
        pane = self.query_one(TrainingPane)
        pane.set_interval(1 / 2, self.app.redraw_chart)  # type: ignore[attr-defined]
        pane.set_interval(1.0, self.app.run_status.show)  # type: ignore[attr-defined]
