"""A modal dialog that asks for one line of text and parses it, and the parsers shared by its callers.

The dialog validates and never raises: its parser returns the value the caller wants (a number, a
path) or a `Refused` with the reason, which the dialog shows while it stays open. It dismisses with
the parsed value, so no caller parses the text again. A parser that raises all the same (a bug) only
refuses the answer: it never ends the app and its run.

The question and the error are shown as plain text (markup=False): they name files and the user's own
text, and a file called "data[v2].txt" is never read as markup.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import Generic, TypeVar

from textual.app import ComposeResult
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import Input, Label

from tui_gpt.app import keymap
from tui_gpt.errors import TuiGptError, checked_path, reason, shown_path
from tui_gpt.settings import is_builtin, problem

T = TypeVar("T")


@dataclass(frozen=True)
class Refused:
    """Why an answer is refused: shown under the field, and the dialog stays open."""

    reason: str


def parse_text(value: str) -> str:
    """The answer as it is: for a dialog that takes any text."""
    return value


class AskScreen(ModalScreen[T | None], Generic[T]):
    """Ask for one line of text; `parse` turns it into the value dismissed with, or says why not (`Refused`)."""

    BINDINGS = keymap.bindings_of(keymap.ASK)

    def __init__(self, question: str, value: str, parse: Callable[[str], T | Refused]) -> None:
        super().__init__()
        self.question = question
        self.value = value
        self.parse = parse

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog"):
            yield Label(self.question, classes="question", markup=False)
            yield Input(value=self.value, id="answer")
            yield Label("", id="answer-error", classes="error", markup=False)

    def on_input_submitted(self, event: Input.Submitted) -> None:
        parsed = self.parsed(event.value.strip())
        if isinstance(parsed, Refused):
            self.query_one("#answer-error", Label).update(parsed.reason)
            return
        self.dismiss(parsed)

    def parsed(self, value: str) -> T | Refused:
        """`parse(value)`, or why not; whatever the parser raises refuses the answer, with one line."""
        if not value:
            return Refused("nothing entered")
        try:
            return self.parse(value)
        except Exception as exc:  # a parser's bug: the answer is refused, the app and its run go on
            return Refused(f"cannot use this: {reason(exc)}")

    def action_cancel(self) -> None:
        self.dismiss(None)


# ---- the parsers ---------------------------------------------------------------------------------


def parse_whole(value: str, setting: str, what: str, shape: str = "a whole number") -> int | Refused:
    """A whole number in ASCII digits ("²" and "٣" are digits to str.isdigit, never to a person typing a count),
    within `setting`'s rule (settings.RULES); `what` names it in the reason, `shape` says what to type."""
    if not (value.isascii() and value.isdigit()):
        return Refused(f"{shape}, in digits 0-9")
    try:
        number = int(value)
    except ValueError:  # more digits than int() takes (4,300)
        return Refused(f"{what} is far too large")
    why = problem(setting, number)
    return Refused(f"{what} {why}") if why else number


def parse_number(value: str, setting: str, what: str) -> float | Refused:
    """A finite decimal number ("3e-4"), within `setting`'s rule; "nan", "inf" and 1e309 are refused by the rule."""
    if not value.isascii():
        return Refused("not a number")
    try:
        number = float(value)
    except ValueError:
        return Refused("not a number")
    why = problem(setting, number)
    return Refused(f"{what} {why}") if why else number


def parse_path(value: str) -> str | Refused:
    """A path the app may try (`~` expanded), or why it can be none: no such user, too long, a NUL..."""
    try:
        return str(checked_path(value))
    except TuiGptError as exc:
        return Refused(str(exc))


def parse_existing(value: str, inside: str = "", missing: str = "no such file or directory") -> str | Refused:
    """An existing path (`~` expanded), or one whose `inside` file exists; else why not (`missing`, if absent)."""
    path = parse_path(value)
    if isinstance(path, Refused):
        return path
    try:
        found = checked_path(os.path.join(path, inside) if inside else path).exists()
    except (OSError, TuiGptError) as exc:  # a folder we may not look into, say
        return Refused(f"{shown_path(value)}: {reason(exc)}")
    return path if found else Refused(f"{shown_path(value)}: {missing}")


def parse_text_source(value: str) -> str | Refused:
    """A text source the corpus loader can try: a built-in name as it is, or an existing path."""
    return value if is_builtin(value) else parse_existing(value)
