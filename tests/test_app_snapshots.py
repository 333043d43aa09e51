"""Snapshots of fixed screens: the fake trainer with its seeded tiny model and fixed loss curve.

Update them with `pytest tests/test_app_snapshots.py --snapshot-update` after a deliberate change,
and look at the SVGs under tests/__snapshots__/ before committing them.
"""

from __future__ import annotations

from app_fakes import make_app, settle, steady, wait_for

from tui_gpt.app.screens.help import HelpScreen


def test_main_screen(snap_compare, tmp_path):
    assert snap_compare(make_app(tmp_path), terminal_size=(160, 48), run_before=steady)


def test_main_screen_small_terminal(snap_compare, tmp_path):
    assert snap_compare(make_app(tmp_path), terminal_size=(100, 30), run_before=steady)


def test_main_screen_long_prompt(snap_compare, tmp_path):
    """A prompt longer than the context: the warning, and the attention map of the last tokens."""
    app = make_app(tmp_path, prompt="The fox ran to the river and the dog sat by the door")
    assert snap_compare(app, terminal_size=(160, 48), run_before=steady)


def test_help_screen(snap_compare, tmp_path):
    async def run_before(pilot) -> None:
        await steady(pilot)
        await pilot.press("f1")
        await wait_for(pilot, lambda: isinstance(pilot.app.screen, HelpScreen), what="the help screen")
        await settle(pilot)

    assert snap_compare(make_app(tmp_path), terminal_size=(160, 48), run_before=run_before)
