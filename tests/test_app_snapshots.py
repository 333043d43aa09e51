"""Snapshots of fixed screens: the fake trainer with its seeded tiny model and fixed loss curve.

Update them with `pytest tests/test_app_snapshots.py --snapshot-update` after a deliberate change,
and look at the SVGs under tests/__snapshots__/ before committing them.
"""

from __future__ import annotations

import math

from fake_trainer import make_app
from pilot import (
    SIZE,
    choose,
    events_of,
    lab_app,
    open_screen,
    p_target_of,
    quiet,
    settle,
    steady,
    steady_with_hints,
    wait_for,
    wait_page,
)

from tui_gpt.app.gpt_app import GPTApp
from tui_gpt.app.lab.surprisal_view import SurprisalScreen
from tui_gpt.app.screens.choice import ChoiceScreen
from tui_gpt.app.screens.help import HelpScreen
from tui_gpt.app.screens.page import PageScreen
from tui_gpt.app.widgets.prompt import PromptInput
from tui_gpt.link.protocol import ExampleStepped


def test_main_screen(snap_compare, tmp_path):
    assert snap_compare(make_app(tmp_path), terminal_size=(160, 48), run_before=steady)


def test_main_screen_small_terminal(snap_compare, tmp_path):
    assert snap_compare(make_app(tmp_path), terminal_size=(100, 30), run_before=steady)


def test_main_screen_long_prompt(snap_compare, tmp_path):
    """A prompt longer than the context: the warning, and the attention map of the last tokens."""
    app = make_app(tmp_path, prompt="The fox ran to the river and the dog sat by the door")
    assert snap_compare(app, terminal_size=(160, 48), run_before=steady)


def test_main_screen_light_theme(snap_compare, tmp_path):
    """Every colour comes from the theme: the chart, its legend, the hints and the bars read on a light one."""

    async def run_before(pilot) -> None:
        pilot.app.theme = "textual-light"
        await steady(pilot, hints=True)

    assert snap_compare(make_app(tmp_path), terminal_size=(160, 48), run_before=run_before)


def test_help_screen(snap_compare, tmp_path):
    async def run_before(pilot) -> None:
        await steady(pilot)
        await pilot.press("f1")
        await wait_for(pilot, lambda: isinstance(pilot.app.screen, HelpScreen), what="the help screen")
        await settle(pilot)

    assert snap_compare(make_app(tmp_path), terminal_size=(160, 48), run_before=run_before)


# ---- the lab -----------------------------------------------------------------------------


def test_snapshot_temperature_view(snap_compare, tmp_path):
    async def run_before(pilot) -> None:
        await steady_with_hints(pilot)
        await pilot.press("up")  # T = 1.1: the scaled column differs from the logits
        await open_screen(pilot, "f6", PageScreen)
        await quiet(pilot)

    assert snap_compare(lab_app(tmp_path), terminal_size=SIZE, run_before=run_before)


def test_snapshot_surprisal_screen(snap_compare, tmp_path):
    async def run_before(pilot) -> None:
        await steady_with_hints(pilot)
        await open_screen(pilot, "f4", ChoiceScreen)
        await choose(pilot, "prompt")
        await wait_for(pilot, lambda: isinstance(pilot.app.screen, SurprisalScreen), what="the surprisal screen")
        await pilot.press("ctrl+f", "left", "left")  # per token (it opens in the app's words)
        await quiet(pilot)

    assert snap_compare(lab_app(tmp_path), terminal_size=SIZE, run_before=run_before)


def test_snapshot_one_step_result(snap_compare, tmp_path):
    prompt = "The quick brown fox"

    async def run_before(pilot) -> None:
        app: GPTApp = pilot.app
        await steady_with_hints(pilot)
        ids = app.state.replica.tokenizer.encode(prompt)
        await open_screen(pilot, "f7", PageScreen)
        await wait_page(pilot, "p(target):", "the one-step result")
        [ev] = events_of(app, ExampleStepped)
        await wait_for(
            pilot,
            lambda: math.isclose(p_target_of(app, ids[:-1], ids[-1]), ev.p_after, rel_tol=1e-5),
            what="the stepped weights in the app",
        )
        await wait_for(pilot, lambda: app.query_one(PromptInput).ghost, what="the ghost text")
        await quiet(pilot)

    assert snap_compare(lab_app(tmp_path, prompt=prompt), terminal_size=SIZE, run_before=run_before)
