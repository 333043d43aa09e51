"""The one keymap: every key and every palette command of the app, in one table.

Each row names an action of the app, its key (if it has one), its title and help in the command
palette, and its word in the footer. The app's `BINDINGS`, the palette's entries and the help
screen's tables are all built from `KEYMAP`: a rebinding is one edit here.
"""

from __future__ import annotations

from dataclasses import dataclass

from textual.binding import Binding, BindingType
from textual.content import Content


@dataclass(frozen=True)
class Row:
    key: str | None  # as Textual names it; None: a palette command only
    action: str  # an action of the app, as Textual writes it: "top_k(1)", "lab('pin')"
    title: str | None  # in the command palette; None: a key only
    help: str = ""  # the palette's second line, and the help screen's; "{out}" is the run's folder
    label: str = ""  # the binding's short description (the footer's word); the title if empty
    footer: int = 0  # its place in the footer, from 1; 0: not shown there

    @property
    def shown_key(self) -> str:
        """The key as a person reads it: "ctrl+↑" for "ctrl+up"."""
        return display(self.key) if self.key else ""


ARROWS = {"up": "↑", "down": "↓", "left": "←", "right": "→"}


def display(key: str) -> str:
    *mods, last = key.split("+")
    return "+".join([*mods, ARROWS.get(last, last)])


# In the order the palette lists them. The tokenizer and model-size commands follow "reset_model".
KEYMAP: tuple[Row, ...] = (
    Row("ctrl+r", "toggle_pause", "Pause or resume training", "Stop or continue the trainer", "Pause/Resume", 2),
    Row("ctrl+n", "step", "Single training step", "Pause and take one optimizer step", "Step", 3),
    Row("ctrl+s", "save", "Save checkpoint", "Write a checkpoint to {out}", "Save", 4),
    Row("ctrl+o", "load_text", "Load text…", "Train from scratch on another file or folder", "Load text"),
    Row(None, "reset_model", "Reset model", "Start training again from random weights"),
    Row(
        "ctrl+f",
        "words",
        "Next word / next token",
        "Show words or tokens, in the top-k and the examples",
        "Words/Tokens",
        5,
    ),
    Row("up", "temperature(0.1)", "Temperature up", "Sharper → flatter next-token probabilities", "Temp+"),
    Row("down", "temperature(-0.1)", "Temperature down", "", "Temp-"),
    Row("ctrl+up", "top_k(1)", "Top-k up", "Show one more next-token guess", "k+"),
    Row("ctrl+down", "top_k(-1)", "Top-k down", "Show one fewer guess", "k-"),
    Row("ctrl+l", "layer", "Attention: next layer", "", "Layer", 6),
    Row("ctrl+g", "head", "Attention: next head", "", "Head", 7),
    Row(None, "attention_mode", "Attention: cycle view", "One head, all heads, the causal mask"),
    Row("ctrl+t", "examples_source", "Examples: prompt or corpus passage", "", "Examples"),
    Row(None, "restart_trainer", "Restart trainer", "Start the trainer process again"),
    Row("f11", "runs", "Runs: overlay earlier runs…", "Earlier runs on this text, faint on the loss chart", "Runs"),
    Row(
        "f12",
        "overlay_axis",
        "Runs: x axis steps / seconds / tokens",
        "Draw the loss chart and the overlays along steps, seconds or tokens",
        "Axis",
    ),
    Row("f2", "lab('mask')", "Lab: mask experiment on/off", "Train without the causal mask, and back", "Mask on/off"),
    Row("f3", "lab('pin')", "Lab: pin an example", "Track p(target | prefix) over training", "Pin"),
    Row(
        "f4",
        "lab('surprisal')",
        "Lab: surprisal colouring",
        "Colour each token by the rank the model gave it",
        "Surprisal",
    ),
    Row("f5", "lab('tokens')", "Lab: tokenizer view", "The exact ids, and lengths under char, bpe and word", "Tokens"),
    Row("f6", "lab('temperature')", "Lab: temperature view", "Logits, logits / T, softmax side by side", "Temperature"),
    Row(
        "f7",
        "lab('one_step')",
        "Lab: one step on one example",
        "One optimizer step on prompt -> last token",
        "One step",
    ),
    Row(
        "f8",
        "lab('memorization')",
        "Lab: memorization check",
        "Sample, and mark spans copied from the training text",
        "Memorization",
    ),
    Row("f9", "lab('compare')", "Lab: compare checkpoints", "Another checkpoint side by side with this run", "Compare"),
    Row("f10", "lab('logit_lens')", "Lab: logit lens", "Each layer's top next tokens, live", "Logit lens"),
    Row(None, "lab('settings', 'set_lr')", "Set learning rate…", "Applies at once, no reset"),
    Row(None, "lab('settings', 'set_eval_interval')", "Set evaluation interval…", "Applies at once, no reset"),
    Row(
        None, "lab('export', 'reproduce')", "Show the command that reproduces this run", "And copy it to the clipboard"
    ),
    Row(
        None,
        "lab('export', 'export')",
        "Export loss history, examples (CSV) and screen (SVG)",
        "Next to the checkpoint folder",
    ),
    Row("f1", "help", "Help: how a GPT learns", "The three ideas and where to see them", "Help", 1),
    Row("ctrl+q", "quit", None, "Save and quit", "Quit", 8),  # the palette has Textual's own Quit
)


def key_of(action: str) -> str:
    """The key of `action`, as a person reads it."""
    return next(row.shown_key for row in KEYMAP if row.action == action)


def bindings() -> list[BindingType]:
    """The app's BINDINGS: the footer's keys in their places, then the others in table order."""
    keyed = [row for row in KEYMAP if row.key]
    keyed.sort(key=lambda row: row.footer or len(KEYMAP) + 1)  # stable: the others keep their order
    return [Binding(row.key, row.action, row.label or row.title or "", show=bool(row.footer)) for row in keyed]


def palette_help(row: Row, out: str) -> Content:
    """The palette's second line: the help, then the key in brackets.

    Plain Content, not markup: the folder is the user's ("o[/]").
    """
    text = row.help.format(out=out)
    if row.key:
        text = f"{text} ({row.shown_key})" if text else f"({row.shown_key})"
    return Content(text)


def help_table(lab: bool) -> str:
    """The help screen's rows of keys (`lab`: the lab's keys only, else all but the lab's), as Markdown."""
    lines = []
    for row in KEYMAP:
        if row.key and row.action.startswith("lab(") == lab:
            lines.append(f"| `{row.shown_key}` | {row.title or row.help} | {row.help if row.title else ''} |")
    return "\n".join(lines)
