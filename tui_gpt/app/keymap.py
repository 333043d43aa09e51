"""The one keymap: every key of the app, of each pane and screen, and every palette command, in tables.

`KEYMAP`'s rows are the app's: each names an action of the app, its key (if it has one), its title and
help in the command palette, and its word in the footer. The app's `BINDINGS` and the palette's entries
are built from it. Each pane, view and dialog with keys of its own has its table below (`PROMPT`,
`ATTENTION`, ...), and its `BINDINGS` are built from that table (`bindings_of`). The help screen lists
every table (`PANES`). A rebinding is one edit here.

Textual names a binding's action by a string ("top_k(1)": `action_top_k(1)` of the app, or of the
widget or screen that holds the binding). The palette resolves each string once, as Textual does
(palette.py), and tests/test_app_keymap.py resolves every binding of the package to a real method.
"""

from __future__ import annotations

from dataclasses import dataclass

from textual.binding import Binding, BindingType
from textual.content import Content


@dataclass(frozen=True)
class Row:
    key: str | None  # as Textual names it ("escape,q": either); None: a palette command only
    action: str  # an action of the app (or of the table's widget or screen), as Textual writes it: "top_k(1)"
    title: str | None  # in the command palette (and the help screen); None: a key only
    help: str = ""  # the palette's second line, and the help screen's; "{out}" is the run's folder
    label: str = ""  # the binding's short description (the footer's word); the title if empty
    footer: int = 0  # the app's keys: its place in the footer, from 1; 0: not shown there
    show: bool = True  # a pane's keys: shown in the footer while the pane has focus
    priority: bool = False  # before the focused widget's own keys (Textual's priority binding)

    @property
    def shown_key(self) -> str:
        """The key as a person reads it: "ctrl+↑" for "ctrl+up", "escape, q" for "escape,q"."""
        return display(self.key) if self.key else ""


ARROWS = {"up": "↑", "down": "↓", "left": "←", "right": "→"}
# What a terminal sends for shift+f1..f4 (xterm: "\x1b[1;2Q" is f14 to Textual): bound beside the key, not shown.
TERMINAL_ALIASES = {"f13": "shift+f1", "f14": "shift+f2", "f15": "shift+f3", "f16": "shift+f4"}


def display(key: str) -> str:
    shown = []
    keys = [one.strip() for one in key.split(",")]
    for one in keys:
        if TERMINAL_ALIASES.get(one) in keys:
            continue
        *mods, last = one.strip().split("+")
        shown.append("+".join([*mods, ARROWS.get(last, last)]))
    return ", ".join(shown)


# The app's keys and commands, in the order the palette lists them. The tokenizer and model-size commands
# follow "reset_model". The lab's actions start with "lab_".
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
    Row("f2", "lab_mask", "Lab: mask experiment on/off", "Train without the causal mask, and back", "Mask on/off"),
    Row(
        "shift+f2,f14",
        "lab_overfit",
        "Lab: overfit one fable",
        "Train on one fable alone: train falls, val rises; and back to your run",
        "Overfit",
    ),
    Row("f3", "lab_pin", "Lab: pin an example", "Track p(target | prefix) over training", "Pin"),
    Row(
        "f4",
        "lab_surprisal",
        "Lab: surprisal colouring",
        "Colour each token by the rank the model gave it",
        "Surprisal",
    ),
    Row("f5", "lab_tokens", "Lab: tokenizer view", "The exact ids, and lengths under char, bpe and word", "Tokens"),
    Row("f6", "lab_temperature", "Lab: temperature view", "Logits, logits / T, softmax side by side", "Temperature"),
    Row(
        "f7",
        "lab_one_step",
        "Lab: one step on one example",
        "One optimizer step on prompt -> last token",
        "One step",
    ),
    Row(
        "f8",
        "lab_memorization",
        "Lab: memorization check",
        "Sample, and mark spans copied from the training text",
        "Memorization",
    ),
    Row("f9", "lab_compare", "Lab: compare checkpoints", "Another checkpoint side by side with this run", "Compare"),
    Row("f10", "lab_logit_lens", "Lab: logit lens", "Each layer's top next tokens, live", "Logit lens"),
    Row(
        "shift+f4,f16",
        "lab_circuits",
        "Lab: watch an induction head form",
        "A 2-layer model on repeated random strings, the heads view open; and back to your run",
        "Circuits",
    ),
    Row(
        "shift+f3,f15",
        "lab_heads",
        "Lab: heads view",
        "Which heads copy: induction and previous-token scores, live, and the phase change",
        "Heads",
    ),
    Row(None, "lab_set_lr", "Set learning rate…", "Applies at once, no reset"),
    Row(None, "lab_set_eval_interval", "Set evaluation interval…", "Applies at once, no reset"),
    Row(None, "lab_reproduce", "Show the command that reproduces this run", "And copy it to the clipboard"),
    Row(
        None,
        "lab_export",
        "Export loss history, examples (CSV) and screen (SVG)",
        "Next to the checkpoint folder",
    ),
    Row("f1", "help", "Help: how a GPT learns", "The three ideas and where to see them", "Help", 1),
    Row("ctrl+q", "quit", None, "Save and quit", "Quit", 8),  # the palette has Textual's own Quit
)


# Textual's own key for the command palette (App.COMMAND_PALETTE_BINDING): listed in the help, bound by Textual.
TEXTUAL: tuple[Row, ...] = (
    Row("ctrl+p", "command_palette", "Command palette", "Every command: tokenizer, model size, reset, theme…"),
)

# Each pane's, view's and dialog's own keys, in the order of their BINDINGS.
PROMPT: tuple[Row, ...] = (
    Row(
        "tab",
        "accept_token",
        "Accept one token",
        "Of the ghost text: the rest of the word, or the likeliest next word",
        "Accept token",
        priority=True,
    ),
    Row("right", "cursor_right", "Accept the ghost word", "At the end of the prompt: the whole of it", "Accept word"),
)
ATTENTION: tuple[Row, ...] = (  # the app's ctrl+l, ctrl+g and "Attention: cycle view" step the same pane
    Row("l", "layer(1)", "Next layer", "", "Layer+"),
    Row("L", "layer(-1)", "Previous layer", "", "Layer-", show=False),
    Row("h", "head(1)", "Next head", "", "Head+"),
    Row("H", "head(-1)", "Previous head", "", "Head-", show=False),
    Row("v", "mode", "Cycle the view", "One head, all heads of the layer, the causal mask alone", "View"),
)
SURPRISAL: tuple[Row, ...] = (
    Row("escape,q", "dismiss", "Close", ""),
    Row("left", "move(-1)", "Previous token", "And the model's top-k before it", "Prev token"),
    Row("right", "move(1)", "Next token", "", "Next token"),
    Row("b", "toggle_buckets", "Rank or probability buckets", "", "Rank/prob"),
    Row("e", "edit_edges", "Edit the bucket edges", "", "Edit buckets"),
    Row(
        "ctrl+f", "words", "Next word / next token", "Per word: -log p(word) is the sum of its tokens'", "Words/Tokens"
    ),
)
COMPARE: tuple[Row, ...] = (  # beside the page's own keys (TEXT)
    Row("ctrl+f", "words", "Next word / next token", "The prompt's surprisal per word or per token", "Words/Tokens"),
)
LOGIT_LENS: tuple[Row, ...] = (
    Row("escape", "dismiss", "Close", ""),
    Row(
        "ctrl+f",
        "words",
        "Next word / next token",
        "Each layer's next words (the Next word search) or tokens",
        "Words/Tokens",
    ),
)
HEADS: tuple[Row, ...] = (Row("escape,q", "dismiss", "Close", ""),)
RUNS: tuple[Row, ...] = (
    Row("space", "flip", "Show or hide the run", "On the loss chart (enter too)", "Show/hide"),
    Row("escape,q", "close", "Close", "With the runs shown"),
)
HELP: tuple[Row, ...] = (Row("escape,f1,q", "dismiss", "Close", ""),)
CONFIRM: tuple[Row, ...] = (
    Row("y", "answer(True)", "Yes", ""),
    Row("n,escape", "answer(False)", "No", ""),
)
ASK: tuple[Row, ...] = (Row("escape", "cancel", "Cancel", ""),)  # also the choice dialog's
TEXT: tuple[Row, ...] = (Row("escape,q", "dismiss", "Close", ""),)


@dataclass(frozen=True)
class Pane:
    name: str  # the help screen's heading
    rows: tuple[Row, ...]


# The help screen's tables of pane keys, in its order.
PANES: tuple[Pane, ...] = (
    Pane("The prompt", PROMPT),
    Pane("The attention pane (when it has focus)", ATTENTION),
    Pane("Surprisal view", SURPRISAL),
    Pane("Logit lens view", LOGIT_LENS),
    Pane("Compare checkpoints", COMPARE),
    Pane("Heads view", HEADS),
    Pane("Runs", RUNS),
    Pane("Questions", CONFIRM),
    Pane("Prompts for a value, and choices", ASK),
    Pane("Pages", TEXT),
    Pane("This help", HELP),
)


def key_of(action: str) -> str:
    """The key of the app's `action`, as a person reads it."""
    return next(row.shown_key for row in KEYMAP if row.action == action)


def bindings() -> list[BindingType]:
    """The app's BINDINGS: the footer's keys in their places, then the others in table order."""
    keyed = [row for row in KEYMAP if row.key]
    keyed.sort(key=lambda row: row.footer or len(KEYMAP) + 1)  # stable: the others keep their order
    return [_binding(row, show=bool(row.footer)) for row in keyed]


def bindings_of(rows: tuple[Row, ...]) -> list[BindingType]:
    """A pane's, view's or dialog's BINDINGS, from its table, in table order."""
    return [_binding(row, show=row.show) for row in rows if row.key]


def _binding(row: Row, show: bool) -> Binding:
    assert row.key is not None
    return Binding(row.key, row.action, row.label or row.title or "", show=show, priority=row.priority)


def palette_help(row: Row, out: str) -> Content:
    """The palette's second line: the help, then the key in brackets.

    Plain Content, not markup: the folder is the user's ("o[/]").
    """
    text = row.help.format(out=out)
    if row.key:
        text = f"{text} ({row.shown_key})" if text else f"({row.shown_key})"
    return Content(text)


def help_table(rows: tuple[Row, ...]) -> str:
    """The help screen's rows for `rows`' keys, as Markdown: key, title, what it does."""
    lines = []
    for row in rows:
        if row.key:
            what = _cell(row.help.format(out="the run's folder"))
            lines.append(f"| `{row.shown_key}` | {_cell(row.title or what)} | {what if row.title else ''} |")
    return "\n".join(lines)


def _cell(text: str) -> str:
    """`text` inside a Markdown table cell: a `|` (as in p(target | prefix)) would end the cell."""
    return text.replace("|", "\\|")


def app_keys(lab: bool) -> tuple[Row, ...]:
    """The app's rows: the lab's (`lab`), else all the others."""
    return tuple(row for row in KEYMAP if row.action.startswith("lab_") == lab)
