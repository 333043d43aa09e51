"""One keymap: the app's bindings, the command palette and the help screen name the same keys."""

from __future__ import annotations

import re

from fake_trainer import make_app
from textual.actions import parse

from tui_gpt.app import palette
from tui_gpt.app.gpt_app import GPTApp
from tui_gpt.app.keymap import KEYMAP, display
from tui_gpt.app.screens.help import HELP


def test_every_binding_is_in_the_palette_and_the_help_with_the_same_key(tmp_path, monkeypatch):
    app = make_app(tmp_path)
    commands = {c.title: c for c in palette.commands(app, app.state.spec, app.state.out)}
    help_rows = {m[0]: m[1] for m in re.findall(r"^\| `([^`]+)`[^|]* \| ([^|]*) \|", HELP, re.M)}
    assert GPTApp.BINDINGS, "the app binds its keys"
    for binding in GPTApp.BINDINGS:
        key = display(binding.key)
        _, name, args = parse(binding.action)
        row = next(r for r in KEYMAP if r.action == binding.action)
        assert help_rows.get(key) == (row.title or row.help), f"{key} in the help screen"
        if row.action == "quit":
            continue  # the palette lists Textual's own Quit
        command = commands[row.title]
        assert str(command.help).endswith(f"({key})"), f"{row.title}: {command.help!r} names another key"
        called: list[tuple] = []
        monkeypatch.setattr(app, f"action_{name}", lambda *a, called=called: called.append(a))
        command.callback()
        assert called == [args], f"the palette's {row.title!r} runs {binding.action}, as {key} does"


def test_no_key_is_bound_twice():
    keys = [b.key for b in GPTApp.BINDINGS]
    assert len(keys) == len(set(keys))
    footer = ["f1", "ctrl+r", "ctrl+n", "ctrl+s", "ctrl+f", "ctrl+l", "ctrl+g", "ctrl+q"]
    assert [b.key for b in GPTApp.BINDINGS if b.show] == footer, "the footer's keys, in its order"
