"""Changes that retrain from scratch (other text, tokenizer, model size, reset) ask first."""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING, Any

from tui_gpt.app.messages import ResetRun
from tui_gpt.app.screens.ask import AskScreen, parse_text_source
from tui_gpt.app.screens.confirm import ConfirmScreen
from tui_gpt.settings import RunSpec

if TYPE_CHECKING:
    from textual.app import App


def confirm_reset(ui: App[Any], spec: RunSpec, question: str) -> None:
    """Ask `question`; on yes, ask the app to start the run again from `spec`."""

    def answer(yes: bool | None) -> None:
        if yes:
            ui.post_message(ResetRun(spec))

    ui.push_screen(ConfirmScreen(f"{question}\nThis resets the model and its training."), answer)


def load_text(ui: App[Any], spec: RunSpec) -> None:
    """Ask for a text to train on instead of `spec`'s."""

    def chosen(path: str | None) -> None:
        if path:
            confirm_reset(ui, replace(spec, sources=[path], resume=None), f"Train from scratch on {path}?")

    question = "Train on which text? A file, a folder, or fables / python-docs"
    ui.push_screen(AskScreen(question, "", parse_text_source), chosen)


def reset_model(ui: App[Any], spec: RunSpec) -> None:
    confirm_reset(ui, replace(spec, resume=None), "Reset the model to random weights?")
