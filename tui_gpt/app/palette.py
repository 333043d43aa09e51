"""Our commands in the command palette (ctrl+p): every row of the keymap, plus tokenizer and model size."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import replace
from functools import partial
from typing import TYPE_CHECKING, Any

from textual.actions import ActionError, parse
from textual.app import SystemCommand

from tui_gpt.app.keymap import KEYMAP, palette_help
from tui_gpt.app.resets import confirm_reset
from tui_gpt.settings import MODEL_SIZES, TOKENIZERS, RunSpec

if TYPE_CHECKING:
    from textual.app import App
    from textual.dom import DOMNode


def commands(app: App[Any], spec: RunSpec, out: str) -> Iterator[SystemCommand]:
    """The palette entries for `app`, running `spec` and saving to `out`, in the order they are listed."""
    for row in KEYMAP:
        if row.title is not None:
            # Content, not the str SystemCommand declares: the palette reads it as markup only when it is a str
            second_line = palette_help(row, out)
            yield SystemCommand(row.title, second_line, resolve(app, row.action))  # type: ignore[arg-type]
        if row.action == "reset_model":
            yield from _resets(app, spec)


def resolve(node: DOMNode, action: str) -> Callable[[], object]:
    """`node`'s method for `action` ("top_k(1)"), called as its key calls it: Textual's parser, Textual's lookup.

    Raises ActionError for an action that names no method (tests/test_app_keymap.py resolves every binding).
    """
    namespace, name, args = parse(action)
    method = getattr(node, f"_action_{name}", None) or getattr(node, f"action_{name}", None)
    if namespace or not callable(method):
        raise ActionError(f"{type(node).__name__} has no action {action!r}")
    return partial(method, *args)


def _resets(app: App[Any], current: RunSpec) -> Iterator[SystemCommand]:
    for kind in TOKENIZERS:
        spec = replace(current, tokenizer=kind, resume=None, model=None)
        question = f"Switch to the {kind} tokenizer?"
        yield SystemCommand(
            f"Tokenizer: {kind}",
            f"Retrain with the {kind} tokenizer (resets the model)",
            _ask_reset(app, spec, question),
        )
    for name, (n_layer, n_head, n_embd) in MODEL_SIZES.items():
        spec = replace(current, n_layer=n_layer, n_head=n_head, n_embd=n_embd, resume=None, model=None)
        yield SystemCommand(
            f"Model size: {name}",
            f"{n_layer} layers, {n_head} heads, width {n_embd} (resets the model)",
            _ask_reset(app, spec, f"Switch to the {name} model?"),
        )


def _ask_reset(app: App[Any], spec: RunSpec, question: str) -> Callable[[], None]:
    return lambda: confirm_reset(app, spec, question)
