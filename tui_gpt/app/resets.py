"""Changes that retrain from scratch (other text, tokenizer, model size, reset) ask first."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tui_gpt.app.messages import ResetRun
from tui_gpt.app.screens.ask import AskScreen, parse_text_source
from tui_gpt.app.screens.confirm import ConfirmScreen
from tui_gpt.settings import RunSpec

if TYPE_CHECKING:
    from textual.app import App


def where_it_saves(out: str | None) -> str:
    """What a reset does to the run's folder `out`: a checkpoint there is kept, and the new run saves beside it."""
    if out and (Path(out).expanduser() / "config.json").exists():
        return f"\n{out} keeps its checkpoint: the new run saves to a new folder beside it."
    return ""


def confirm_reset(ui: App[Any], spec: RunSpec, question: str, out: str | None = None) -> None:
    """Ask `question`; on yes, ask the app to start the run again from `spec` (the trainer, not this,
    moves off a folder `out` that holds a checkpoint: link.worker.TrainerLoop.reset)."""

    def answer(yes: bool | None) -> None:
        if yes:
            ui.post_message(ResetRun(spec))

    text = f"{question}\nThis resets the model and its training.{where_it_saves(out)}"
    ui.push_screen(ConfirmScreen(text), answer)


def load_text(ui: App[Any], spec: RunSpec, out: str | None = None) -> None:
    """Ask for a text to train on instead of `spec`'s."""

    def chosen(path: str | None) -> None:
        if path:
            confirm_reset(ui, replace(spec, sources=[path], resume=None), f"Train from scratch on {path}?", out)

    question = "Train on which text? A file, a folder, or fables / python-docs"
    ui.push_screen(AskScreen(question, "", parse_text_source), chosen)


def reset_model(ui: App[Any], spec: RunSpec, out: str | None = None) -> None:
    confirm_reset(ui, replace(spec, resume=None), "Reset the model to random weights?", out)
