"""One keymap: the app's bindings, each pane's and screen's bindings, the command palette and the help screen
name the same keys, and every binding's action names a real method."""

from __future__ import annotations

import importlib
import inspect
import pkgutil
import re

import pytest
from fake_trainer import make_app
from textual.actions import parse
from textual.app import App
from textual.dom import DOMNode

import tui_gpt.app
from tui_gpt.app import keymap, palette
from tui_gpt.app.gpt_app import GPTApp
from tui_gpt.app.keymap import KEYMAP, display
from tui_gpt.app.screens.help import HELP


def _classes_with_bindings() -> list[type[DOMNode]]:
    """Every app, screen and widget of tui_gpt.app that declares BINDINGS of its own."""
    found: dict[str, type[DOMNode]] = {}
    for info in pkgutil.walk_packages(tui_gpt.app.__path__, "tui_gpt.app."):
        module = importlib.import_module(info.name)
        for _, cls in inspect.getmembers(module, inspect.isclass):
            if issubclass(cls, DOMNode) and cls.__module__.startswith("tui_gpt.") and "BINDINGS" in vars(cls):
                found[f"{cls.__module__}.{cls.__qualname__}"] = cls
    return list(found.values())


CLASSES = _classes_with_bindings()
TABLES = {
    name: rows
    for name, rows in vars(keymap).items()
    if name.isupper() and isinstance(rows, tuple) and all(isinstance(row, keymap.Row) for row in rows)
}


def test_the_package_has_bindings_to_check():
    names = {cls.__name__ for cls in CLASSES}
    assert {"GPTApp", "AttentionMap", "PromptInput", "SurprisalScreen", "RunsScreen", "HelpScreen"} <= names


@pytest.mark.parametrize("cls", CLASSES, ids=lambda cls: cls.__name__)
def test_every_binding_action_resolves_to_a_method(cls):
    """Textual finds a binding's action by its string ("top_k(1)" -> action_top_k(1)) only when the key is
    pressed: a typo, a renamed method or a wrong number of arguments would do nothing, silently."""
    for binding in cls._merged_bindings.key_to_bindings.values() if cls._merged_bindings else ():
        for one in binding:
            namespace, name, args = parse(one.action)
            target = {"": cls, "app": GPTApp}.get(namespace)
            if target is None:  # "screen." or "focused.": resolved against whatever is on screen
                continue
            method = getattr(target, f"_action_{name}", None) or getattr(target, f"action_{name}", None)
            assert callable(method), f"{cls.__name__}: {one.key} -> {one.action!r}: no action_{name}"
            try:
                inspect.signature(method).bind(None, *args)  # None: self
            except TypeError as exc:
                pytest.fail(f"{cls.__name__}: {one.key} -> {one.action!r} does not fit action_{name}: {exc}")


@pytest.mark.parametrize("cls", CLASSES, ids=lambda cls: cls.__name__)
def test_every_binding_comes_from_a_keymap_table(cls):
    """No BINDINGS written by hand: each class's own are exactly those of one table of keymap.py."""
    own = [(b.key, b.action, b.description, b.show, b.priority) for b in vars(cls)["BINDINGS"]]
    built = {
        name: [(b.key, b.action, b.description, b.show, b.priority) for b in keymap.bindings_of(rows)]
        for name, rows in TABLES.items()
    }
    built["KEYMAP"] = [(b.key, b.action, b.description, b.show, b.priority) for b in keymap.bindings()]
    assert own in built.values(), f"{cls.__name__}'s BINDINGS are not built from a table of keymap.py"


def test_the_help_lists_every_key_of_every_table():
    help_rows = re.findall(r"^\| `([^`]+)` \| ([^|]*) \|", HELP, re.M)
    for name, rows in TABLES.items():
        for row in rows:
            if row.key:
                assert (display(row.key), row.title or row.help) in help_rows, f"{name}: {row.key} in the help"
    assert keymap.TEXTUAL[0].key == App.COMMAND_PALETTE_BINDING, "the help names Textual's own palette key"
    assert "| type |" not in HELP and "(at the end)" not in HELP, "no key row written by hand"


def test_every_binding_is_in_the_palette_and_the_help_with_the_same_key(tmp_path, monkeypatch):
    app = make_app(tmp_path)
    help_rows = {m[0]: m[1] for m in re.findall(r"^\| `([^`]+)`[^|]* \| ([^|]*) \|", HELP, re.M)}
    assert GPTApp.BINDINGS, "the app binds its keys"
    called: list[tuple[str, tuple]] = []
    for binding in GPTApp.BINDINGS:
        _, name, _ = parse(binding.action)
        monkeypatch.setattr(app, f"action_{name}", lambda *a, name=name: called.append((name, a)))
    commands = {c.title: c for c in palette.commands(app, app.state.spec, app.state.out)}
    for binding in GPTApp.BINDINGS:
        key = display(binding.key)
        _, name, args = parse(binding.action)
        row = next(r for r in KEYMAP if r.action == binding.action)
        assert help_rows.get(key) == (row.title or row.help), f"{key} in the help screen"
        if row.action == "quit":
            continue  # the palette lists Textual's own Quit
        command = commands[row.title]
        assert str(command.help).endswith(f"({key})"), f"{row.title}: {command.help!r} names another key"
        called.clear()
        command.callback()
        assert called == [(name, args)], f"the palette's {row.title!r} runs {binding.action}, as {key} does"


def test_every_palette_command_of_the_keymap_resolves(tmp_path):
    """The palette-only rows ("Set learning rate…") have no key to test them by: each names a method of the app."""
    app = make_app(tmp_path)
    for row in KEYMAP:
        method = palette.resolve(app, row.action).func  # type: ignore[attr-defined]
        assert method.__self__ is app and method.__name__ == f"action_{parse(row.action)[1]}"


@pytest.mark.parametrize(
    "action, experiment, method",
    [
        ("lab_mask", "mask", "start"),
        ("lab_overfit", "overfit", "start"),
        ("lab_circuits", "circuits", "start"),
        ("lab_logit_lens", "logit_lens", "start"),
        ("lab_set_lr", "settings", "set_lr"),
        ("lab_set_eval_interval", "settings", "set_eval_interval"),
        ("lab_reproduce", "export", "reproduce"),
        ("lab_export", "export", "export"),
    ],
)
def test_the_lab_actions_call_their_experiment(tmp_path, monkeypatch, action, experiment, method):
    app = make_app(tmp_path)
    called: list[str] = []
    monkeypatch.setattr(getattr(app.lab, experiment), method, lambda: called.append(method))
    palette.resolve(app, action)()
    assert called == [method]


def test_no_key_is_bound_twice():
    keys = [b.key for b in GPTApp.BINDINGS]
    assert len(keys) == len(set(keys))
    footer = ["f1", "ctrl+r", "ctrl+n", "ctrl+s", "ctrl+f", "ctrl+l", "ctrl+g", "ctrl+q"]
    assert [b.key for b in GPTApp.BINDINGS if b.show] == footer, "the footer's keys, in its order"
