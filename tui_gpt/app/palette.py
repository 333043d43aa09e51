"""Our commands in the command palette (ctrl+p): every action, plus tokenizer, model size and the lab."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import replace
from typing import TYPE_CHECKING

from textual.app import SystemCommand
from textual.content import Content

from tui_gpt.app.resets import confirm_reset
from tui_gpt.settings import MODEL_SIZES, TOKENIZERS, RunSpec

if TYPE_CHECKING:
    from tui_gpt.app.app import GPTApp


def commands(app: GPTApp) -> Iterator[SystemCommand]:
    """The palette entries for `app`, in the order they are listed."""
    lab = app.lab
    entries: list[tuple[str, str | Content, Callable[[], object]]] = [
        ("Pause or resume training", "Stop or continue the trainer (ctrl+r)", app.action_toggle_pause),
        ("Single training step", "Pause and take one optimizer step (ctrl+n)", app.action_step),
        # The palette reads help as markup; the folder is the user's ("o[/]"): plain Content instead.
        ("Save checkpoint", Content(f"Write a checkpoint to {app.out} (ctrl+s)"), app.action_save),
        ("Load text…", "Train from scratch on another file or folder (ctrl+o)", app.action_load_text),
        ("Reset model", "Start training again from random weights", app.reset_model),
    ]
    for kind in TOKENIZERS:
        spec = replace(app.spec, tokenizer=kind, resume=None, model=None)
        entries.append(
            (
                f"Tokenizer: {kind}",
                f"Retrain with the {kind} tokenizer (resets the model)",
                _ask_reset(app, spec, f"Switch to the {kind} tokenizer?"),
            )
        )
    for name, (n_layer, n_head, n_embd) in MODEL_SIZES.items():
        spec = replace(app.spec, n_layer=n_layer, n_head=n_head, n_embd=n_embd, resume=None, model=None)
        entries.append(
            (
                f"Model size: {name}",
                f"{n_layer} layers, {n_head} heads, width {n_embd} (resets the model)",
                _ask_reset(app, spec, f"Switch to the {name} model?"),
            )
        )
    entries += [
        ("Next word / next token", "Show words or tokens, in the top-k and the examples (ctrl+f)", app.action_words),
        ("Temperature up", "Sharper → flatter next-token probabilities (↑)", lambda: app.action_temperature(0.1)),
        ("Temperature down", "(↓)", lambda: app.action_temperature(-0.1)),
        ("Top-k up", "Show one more next-token guess (ctrl+↑)", lambda: app.action_top_k(1)),
        ("Top-k down", "Show one fewer guess (ctrl+↓)", lambda: app.action_top_k(-1)),
        ("Attention: next layer", "(ctrl+l)", app.action_layer),
        ("Attention: next head", "(ctrl+g)", app.action_head),
        ("Attention: cycle view", "One head, all heads, the causal mask", app.attention.action_mode),
        ("Examples: prompt or corpus passage", "(ctrl+t)", app.action_examples_source),
        ("Restart trainer", "Start the trainer process again", app.action_restart_trainer),
        ("Lab: mask experiment on/off", "Train without the causal mask, and back (f2)", lab.mask.start),
        ("Lab: pin an example", "Track p(target | prefix) over training (f3)", lab.pin.start),
        ("Lab: surprisal colouring", "Colour each token by the rank the model gave it (f4)", lab.surprisal.start),
        ("Lab: tokenizer view", "The exact ids, and lengths under char, bpe and word (f5)", lab.tokens.start),
        ("Lab: temperature view", "Logits, logits / T, softmax side by side (f6)", lab.temperature.start),
        ("Lab: one step on one example", "One optimizer step on prompt -> last token (f7)", lab.one_step.start),
        (
            "Lab: memorization check",
            "Sample, and mark spans copied from the training text (f8)",
            lab.memorization.start,
        ),
        ("Lab: compare checkpoints", "Another checkpoint side by side with this run (f9)", lab.compare.start),
        ("Set learning rate…", "Applies at once, no reset", lab.settings.set_lr),
        ("Set evaluation interval…", "Applies at once, no reset", lab.settings.set_eval_interval),
        ("Show the command that reproduces this run", "And copy it to the clipboard", lab.export.reproduce),
        ("Export loss history, examples (CSV) and screen (SVG)", "Next to the checkpoint folder", lab.export.export),
        ("Help: how a GPT learns", "The three ideas and where to see them (f1)", app.action_help),
    ]
    for title, help_text, callback in entries:
        yield SystemCommand(title, help_text, callback)  # type: ignore[arg-type]  # Content is what the palette makes of a str


def _ask_reset(app: GPTApp, spec: RunSpec, question: str) -> Callable[[], None]:
    return lambda: confirm_reset(app, spec, question)
