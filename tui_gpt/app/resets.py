"""Changes that retrain from scratch (other text, tokenizer, model size, reset) ask first."""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING

from tui_gpt.app.screens.dialogs import AskScreen, ConfirmScreen, check_path
from tui_gpt.settings import RunSpec

if TYPE_CHECKING:
    from tui_gpt.app.app import GPTApp


def confirm_reset(app: GPTApp, spec: RunSpec, question: str) -> None:
    """Ask `question`; on yes, start the run again from `spec`."""

    def answer(yes: bool | None) -> None:
        if yes:
            app.reset(spec)

    app.push_screen(ConfirmScreen(f"{question}\nThis resets the model and its training."), answer)


def load_text(app: GPTApp) -> None:
    def chosen(path: str | None) -> None:
        if path:
            confirm_reset(app, replace(app.spec, sources=[path], resume=None), f"Train from scratch on {path}?")

    question = "Train on which text? A file, a folder, or fables / python-docs"
    app.push_screen(AskScreen(question, "", check_path), chosen)


def reset_model(app: GPTApp) -> None:
    confirm_reset(app, replace(app.spec, resume=None), "Reset the model to random weights?")
