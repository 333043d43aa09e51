"""Snapshots of fixed screens: the fake trainer with its seeded tiny model and fixed loss curve.

Update them with `pytest tests/test_app_snapshots.py --snapshot-update` after a deliberate change,
and look at the SVGs under tests/__snapshots__/ before committing them.
"""

from __future__ import annotations

from app_fakes import make_app, settle, text_of, wait_for, wait_ready

from tui_gpt.app.app import GPTApp
from tui_gpt.app.screens.help import HelpScreen
from tui_gpt.app.widgets.prompt import PromptInput
from tui_gpt.app.widgets.training import TrainingPane


async def _steady(pilot) -> None:
    """The model is in, the ghost text, stats line and chart are drawn, and the cursor does not blink."""
    app: GPTApp = pilot.app
    app.query_one(PromptInput).cursor_blink = False
    await wait_ready(pilot)
    await wait_for(pilot, lambda: "tok/s" in text_of(app.query_one("#train-stats")), what="the stats line")
    await wait_for(
        pilot,
        lambda: _chart_drawn(app),
        what="the loss chart",
    )
    await app.workers.wait_for_complete()  # the ghost text and the greedy line come from thread workers
    await settle(pilot)


def test_main_screen(snap_compare, tmp_path):
    assert snap_compare(make_app(tmp_path), terminal_size=(160, 48), run_before=_steady)


def test_main_screen_small_terminal(snap_compare, tmp_path):
    assert snap_compare(make_app(tmp_path), terminal_size=(100, 30), run_before=_steady)


def test_main_screen_long_prompt(snap_compare, tmp_path):
    """A prompt longer than the context: the warning, and the attention map of the last tokens."""
    app = make_app(tmp_path, prompt="The fox ran to the river and the dog sat by the door")
    assert snap_compare(app, terminal_size=(160, 48), run_before=_steady)


def test_help_screen(snap_compare, tmp_path):
    async def run_before(pilot) -> None:
        await _steady(pilot)
        await pilot.press("f1")
        await wait_for(pilot, lambda: isinstance(pilot.app.screen, HelpScreen), what="the help screen")
        await settle(pilot)

    assert snap_compare(make_app(tmp_path), terminal_size=(160, 48), run_before=run_before)


def _chart_drawn(app) -> bool:
    pane = app.query_one(TrainingPane)
    return pane.chart is not None and not pane.curve.dirty
