"""Pilot tests of the heads view (shift+f3, #28): live heatmaps, the score chart and the phase change, with the
fake trainer. The head readings are fed as the trainer sends them (TrainEvent.heads on a Losses event), with
numbers chosen here, so each can be looked for on screen."""

from __future__ import annotations

import random

from fake_trainer import TRAIN_STEPS, FakeTrainer
from pilot import (
    SIZE,
    chart_drawn,
    flat,
    lab_app,
    open_screen,
    quiet,
    ready,
    run_command,
    screen_text,
    settle,
    shown,
    steady,
    sync,
    text_of,
    wait_for,
)
from textual import events
from textual._xterm_parser import XTermParser
from textual.color import Color

from tui_gpt.app import keymap
from tui_gpt.app.lab.heads_view import HeadsScreen, Series, waiting
from tui_gpt.app.screens.confirm import ConfirmScreen
from tui_gpt.app.terminal_keys import as_key
from tui_gpt.app.widgets.head_chart import HeadChart
from tui_gpt.app.widgets.head_grid import HeadGrid, cell_text
from tui_gpt.link.protocol import Losses
from tui_gpt.probes.phase import find_phase_change

WORDS = "layer 2 head 1 now copies: it attends to the token after the earlier occurrence of the current one"


def reading(step: int, best: float, icl: float, in_context: float | None = None) -> dict:
    """A TrainEvent dict carrying head scores: 2 layers x 2 heads, layer 2 head 1 the copying one."""
    return {
        "step": step,
        "loss": 2.0,
        "lr": 1e-2,
        "tokens_per_s": 12345.0,
        "elapsed": 0.25 * step,
        "val_loss": None,
        "eval_train_loss": None,
        "heads": {
            "previous_token": [[0.81, 0.12], [0.1, 0.33]],
            "induction": [[0.05, 0.04], [best, 0.06]],
            "icl": icl,
            "in_context": in_context,
        },
    }


def plain_step(step: int) -> dict:
    return {**reading(step, 0.0, 0.0), "heads": None}


def grid_text(app, name: str) -> str:
    return app.screen.query_one(f"#heads-{name}", HeadGrid).render().plain


def shade_distance(app, name: str, number: str, variable: str) -> float:
    """How far the cell showing `number` is shaded from the theme colour `variable` (RGB distance)."""
    text = app.screen.query_one(f"#heads-{name}", HeadGrid).render()
    at = text.plain.index(number)
    style = next(span.style for span in text.spans if span.start <= at < span.end)
    cell = style.bgcolor.get_truecolor()
    full = Color.parse(app.get_css_variables()[variable]).rgb
    return sum((a - b) ** 2 for a, b in zip(cell, full, strict=True)) ** 0.5


@sync
async def test_the_heads_view_draws_each_reading_as_it_arrives_and_marks_the_phase_change(tmp_path):
    async with ready(lab_app(tmp_path)) as (app, pilot):
        client: FakeTrainer = app.client
        await open_screen(pilot, "shift+f3", HeadsScreen)
        screen: HeadsScreen = app.screen
        chart = screen.query_one(HeadChart)
        # Before any reading: said, not an empty box.
        assert "No head scores yet: head scores arrive" in shown(app)
        assert not screen.query_one("#heads-maps").display and not chart.display
        assert "A previous-token head attends from each token to the one just before it" in shown(app)

        # Steps without head scores change nothing; the first reading fills both heatmaps and the chart.
        step = TRAIN_STEPS + 10
        client._emit(Losses([plain_step(step - 1), reading(step, 0.07, -0.01, 0.02), plain_step(step + 1)]))
        await settle(pilot)
        assert screen.query_one("#heads-maps").display and chart.display
        induction, previous = grid_text(app, "induction"), grid_text(app, "previous")
        assert "layer 1" in induction and "layer 2" in induction and "head 2" in induction
        assert all(n in previous for n in ("0.81", "0.12", "0.10", "0.33"))
        assert all(n in induction for n in ("0.05", "0.04", "0.07", "0.06"))
        # Shaded on the theme: a high score is nearer the grid's full colour than a low one.
        assert shade_distance(app, "previous", "0.81", "primary") < shade_distance(app, "previous", "0.10", "primary")
        text = shown(app)
        assert "0.81" in text and "0.33" in text  # on screen, not only in the widget
        assert f"step {step:,} · 1 reading" in text and "best induction head: layer 2 head 1, 0.07" in text
        assert "repeat loss, 2nd half − 1st: -0.01 nats" in text and "val, late − early token: +0.02 nats" in text
        assert chart.steps == [step] and chart.best == [0.07] and chart.mark is None
        assert "No phase change yet" in text

        # A sharp rise of the best induction score while the repeat loss falls: the phase change.
        series = [(0.08, -0.02), (0.09, -0.03), (0.30, -0.4), (0.62, -1.1), (0.66, -1.2)]
        for i, (best, icl) in enumerate(series, start=1):
            client._emit(Losses([reading(step + 10 * i, best, icl)]))
            await settle(pilot)
            assert len(chart.steps) == i + 1 and chart.best[-1] == best and chart.icl[-1] == icl
        rise = step + 40  # 0.30 < halfway (0.365) <= 0.62
        assert chart.mark == rise
        text = shown(app)
        assert f"Phase change at step {rise:,}:" in text and WORDS in text
        assert "0.09 -> 0.62" in text
        assert "0.66" in grid_text(app, "induction") and "best induction head: layer 2 head 1, 0.66" in text
        assert "phase change" in flat(screen_text(app)).replace("│ phase change", "")  # the label on the chart too

        # Another theme: the chart's lines take its colours (the heatmaps read them on every paint).
        app.theme = "nord"
        await settle(pilot)
        light = Color.parse(app.get_css_variables()["success"]).rgb
        assert light in chart_colours(chart)

        await pilot.press("escape")
        await settle(pilot)
        assert not isinstance(app.screen, HeadsScreen)


def chart_colours(chart: HeadChart) -> set[tuple[int, int, int]]:
    """The foreground colours the chart draws with, as RGB."""
    return {span.style.color.get_truecolor() for span in chart.render().spans if span.style.color is not None}


@sync
async def test_the_heads_view_is_in_the_palette_and_on_the_terminal_alias(tmp_path):
    async with ready(lab_app(tmp_path)) as (app, pilot):
        await run_command(pilot, "heads", "Lab: heads view")
        await wait_for(pilot, lambda: isinstance(app.screen, HeadsScreen), what="the heads view")
        await pilot.press("q")
        await settle(pilot)
        await open_screen(pilot, "f15", HeadsScreen)  # what a terminal sends for shift+f3


@sync
async def test_the_heads_view_at_80x24_and_smaller(tmp_path):
    """A 6 x 6 model's readings at 80x24: every layer and every number readable; smaller still: no crash."""
    async with ready(lab_app(tmp_path), size=(80, 24)) as (app, pilot):
        client: FakeTrainer = app.client
        await open_screen(pilot, "shift+f3", HeadsScreen)
        table = [[round(0.1 * layer + 0.01 * head, 2) for head in range(6)] for layer in range(6)]
        event = reading(TRAIN_STEPS + 1, 0.0, -0.5)
        event["heads"].update(induction=table, previous_token=table)
        client._emit(Losses([event]))
        await settle(pilot)
        induction = grid_text(app, "induction")
        assert all(f"layer {n}" in induction for n in range(1, 7))
        assert ".55" in induction and ".01" in induction  # shortened to fit, still there
        assert "best induction head: layer 6 head 6, 0.55" in flat(text_of(app.screen.query_one("#heads-status")))
        for size in ((60, 20), (30, 10)):
            await pilot.resize_terminal(*size)
            await settle(pilot)
            assert isinstance(app.screen, HeadsScreen) and app._exception is None


@sync
async def test_a_reset_empties_the_view(tmp_path):
    async with ready(lab_app(tmp_path)) as (app, pilot):
        await open_screen(pilot, "shift+f3", HeadsScreen)
        app.client._emit(Losses([reading(TRAIN_STEPS + 1, 0.5, -0.5)]))
        await settle(pilot)
        assert "layer 2 head 1, 0.50" in shown(app)
        await run_command(pilot, "reset model", "Reset model")
        await wait_for(pilot, lambda: isinstance(app.screen, ConfirmScreen), what="the reset question")
        await pilot.press("y")
        await wait_for(pilot, lambda: isinstance(app.screen, HeadsScreen), what="back to the heads view")
        await wait_for(pilot, lambda: "No head scores yet" in shown(app), what="the view emptied by the reset")


def test_numbers_shorten_to_fit_their_cells():
    assert [cell_text(0.625, w) for w in (6, 4, 3, 2, 1)] == [" 0.62 ", "0.62", ".62", ".6", "1"]
    assert [cell_text(1.0, w) for w in (4, 3, 2, 1)] == ["1.00", "1.0", "1 ", "1"]


def test_snapshot_heads_view_after_a_phase_change(snap_compare, tmp_path):
    async def run_before(pilot) -> None:
        await steady(pilot)
        await open_screen(pilot, "shift+f3", HeadsScreen)
        series = [(0.07, 0.0), (0.08, -0.02), (0.09, -0.03), (0.30, -0.4), (0.62, -1.1), (0.66, -1.2)]
        events = [reading(TRAIN_STEPS + 10 * i, best, icl, -0.1 * i) for i, (best, icl) in enumerate(series, 1)]
        pilot.app.client._emit(Losses(events))
        # The main screen shows through at the sides: wait for its timers to draw the new steps.
        last = f"step {events[-1]['step']:,}"
        await wait_for(pilot, lambda: last in text_of(pilot.app.query_one("#train-stats")), what="the stats line")
        await wait_for(pilot, lambda: chart_drawn(pilot.app), what="the loss chart")
        await quiet(pilot)

    assert snap_compare(lab_app(tmp_path), terminal_size=SIZE, run_before=run_before)


def test_the_views_phase_change_is_find_phase_changes():
    """The view reads each reading once (Series); its phase change must be probes.phase's on the full tables."""
    rng = random.Random(0)
    found = 0
    for trial in range(200):
        n, layers, heads = rng.randint(1, 30), rng.randint(1, 4), rng.randint(1, 4)
        jump = rng.randint(0, n)
        scores = [
            {
                "induction": [
                    [rng.random() * (0.15 if i < jump else 0.9) for _ in range(heads)] for _ in range(layers)
                ],
                "icl": -rng.random() * i,
            }
            for i in range(n)
        ]
        steps = [10 * i for i in range(n)]
        series = Series()
        for end in range(1, n + 1):  # readings arriving one by one, and several at once
            if rng.random() < 0.5 or end == n:
                series.extend(steps[:end], scores[:end])
        phase = find_phase_change(steps, scores)
        assert series.phase_change(scores) == phase, f"trial {trial}"
        found += phase is not None
    assert found > 100  # most trials rise far enough to have one


def test_before_the_first_reading_the_view_says_when_it_comes():
    assert waiting(100).startswith("No head scores yet: head scores arrive every 100 steps")
    assert "at regular steps" in waiting(None)  # a run whose settings do not say
    assert waiting(0).startswith("Head scores are off for this run")


def test_shift_f3_as_xterm_sends_it_is_the_key_not_a_cursor_report():
    """xterm's shift+F3 is ESC [ 1 ; 2 R, which Textual's parser reads as a cursor-position report."""
    parsed = list(XTermParser().feed("\x1b[1;2R"))
    assert [type(e) for e in parsed] == [events.CursorPosition]
    key = as_key(parsed[0])
    assert isinstance(key, events.Key) and key.key == "f15" and keymap.TERMINAL_ALIASES["f15"] == "shift+f3"
    (other,) = XTermParser().feed("\x1b[5;10R")  # any other report stays one
    assert as_key(other) is other
