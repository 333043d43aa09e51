"""Pilot tests of the overlays: earlier runs of the same text on the loss chart, the Runs screen, the x axis.

The registry is a real one in a private TUI_GPT_DATA, written as a sweep writes it (Registry, RegistrySink):
2 learning rates x 2 seeds on the fables, with made-up but plausible evaluations.
"""

from __future__ import annotations

import math
from dataclasses import replace
from pathlib import Path

import pytest
from fake_trainer import FAKE_SPEC, TRAIN_STEPS, build
from pilot import (
    chart_drawn,
    lab_app,
    open_screen,
    quiet,
    ready,
    run_command,
    screen_text,
    settle,
    steady,
    sync,
    text_of,
    wait_for,
)
from textual.color import Color
from textual.widgets import DataTable

from tui_gpt.app.earlier_runs.runs_screen import SHOWN, RunsScreen
from tui_gpt.app.widgets.loss_chart import BAND, FAINT
from tui_gpt.app.widgets.training import TrainingPane
from tui_gpt.runs.recorder import settings_of
from tui_gpt.runs.registry import Registry, RegistrySink
from tui_gpt.runs.tracking import EvalRow, RunEnd, RunInfo
from tui_gpt.settings import reproduce_command

LRS = (3e-3, 1e-3)  # the live run (FAKE_SPEC) has lr 0.01, seed 0
SEEDS = (1, 2)
EVALS = range(0, 201, 50)
TOKENS_PER_STEP = 256  # FAKE_SPEC: batch 8 x block 32
SHOW_THE_OTHER_THREE = ("down", "space", "down", "enter", "down", "space")  # in the Runs screen: space or enter
TALL = (160, 64)  # a chart tall enough that no line hides another's every character


def val_loss(lr: float, seed: int, step: int) -> float:
    return round(1.9 + 2.3 * math.exp(-step * lr / 0.1) + 0.12 * seed, 4)


def wall_s(seed: int, step: int) -> float:
    return round(step * (0.02 + 0.001 * seed), 3)


def record(registry: Registry, lr: float, seed: int, digest: str, text: str = "fables (bundled)") -> None:
    spec = replace(FAKE_SPEC, train=replace(FAKE_SPEC.train, lr=lr, seed=seed))
    sink = RegistrySink(registry)
    sink.start(RunInfo("sweep", settings_of(spec), "char", text, digest, reproduce_command(spec)))
    for step in EVALS:
        val = val_loss(lr, seed, step)
        sink.eval(EvalRow(step, step * TOKENS_PER_STEP, wall_s(seed, step), val - 0.05, val, val / math.log(2), lr))
    sink.finish(RunEnd("done", EVALS[-1], wall_s(seed, EVALS[-1]), 12800.0))


@pytest.fixture
def registry(tmp_path, monkeypatch) -> Path:
    """The 4 runs on the fables (ids 1-4: lr 3e-3 seeds 1, 2, then lr 1e-3 seeds 1, 2), and one on another text."""
    monkeypatch.setenv("TUI_GPT_DATA", str(tmp_path / "data"))
    digest = build(FAKE_SPEC).ready.corpus["digest"]
    with Registry() as reg:
        for lr in LRS:
            for seed in SEEDS:
                record(reg, lr, seed, digest)
        record(reg, 1e-3, 1, "0" * 64, "other.txt")
    return tmp_path / "data" / "runs.sqlite"


def pane(app) -> TrainingPane:
    return app.query_one(TrainingPane)


def faint(app, name: str, amount: float) -> tuple[int, int, int]:
    variables = app.get_css_variables()
    colour = Color.parse(variables[name])
    return Color.parse(variables["background"]).blend(colour, amount * colour.a).rgb


async def drawn(pilot, what: str, ready_when) -> set[tuple[int, int, int]]:
    """Wait until `ready_when()` and the chart has drawn it; the colours of the characters the chart shows."""
    app = pilot.app
    await wait_for(pilot, lambda: ready_when() and chart_drawn(app), what=what)
    await settle(pilot)
    rendered = pane(app).chart.render()
    return {span.style.color.triplet for span in rendered.spans if span.style.color and span.style.color.triplet}


@sync
async def test_the_last_finished_run_is_overlaid_and_the_runs_screen_adds_seed_groups_as_bands(registry, tmp_path):
    async with ready(lab_app(tmp_path), size=TALL) as (app, pilot):
        curve = pane(app).curve
        colours = await drawn(pilot, "the default overlay", lambda: curve.overlays)
        [line] = curve.overlays
        assert line.ids == [4] and not line.lo, "the newest finished run: lr 1e-3, seed 2"
        assert line.label == "#4 lr 1e-3 vs 0.01 · seed 2 vs 0"
        assert line.xs == list(EVALS) and line.ys == [val_loss(1e-3, 2, s) for s in EVALS]
        assert line.label in text_of(app.query_one("#overlay-legend"))
        assert tuple(faint(app, line.colour, FAINT)) in colours, "the overlay is drawn, faint"

        await open_screen(pilot, "f11", RunsScreen)
        table = app.screen.query_one(DataTable)
        assert [table.get_row_at(i)[1].plain for i in range(table.row_count)] == ["#4", "#3", "#2", "#1"]
        assert [table.get_row_at(i)[0] for i in range(4)] == [SHOWN, "", "", ""], "other.txt's run is not listed"
        assert table.get_row_at(1)[4].plain == "lr 1e-3 vs 0.01 · seed 1 vs 0"
        await pilot.press(*SHOW_THE_OTHER_THREE)
        assert [table.get_row_at(i)[0] for i in range(4)] == [SHOWN] * 4
        await pilot.press("escape")
        colours = await drawn(pilot, "two seed groups", lambda: len(curve.overlays) == 2)

        slow, fast = curve.overlays  # seed_groups keeps the order of the runs, newest first
        assert (sorted(slow.ids), sorted(fast.ids)) == ([3, 4], [1, 2])
        assert slow.label == "#4 #3 lr 1e-3 vs 0.01 (2 seeds: mean, band)"
        for step, y, lo, hi in zip(EVALS, fast.ys, fast.lo, fast.hi, strict=True):
            seeds = [val_loss(3e-3, seed, step) for seed in SEEDS]
            assert (lo, hi) == (min(seeds), max(seeds)) and y == pytest.approx(sum(seeds) / 2)
        legend = text_of(app.query_one("#overlay-legend"))
        assert slow.label in legend and fast.label in legend
        for line in curve.overlays:
            assert {tuple(faint(app, line.colour, FAINT)), tuple(faint(app, line.colour, BAND))} <= colours

        await pilot.resize_terminal(80, 24)  # a pane too short for everything clips earlier runs' legend first
        await settle(pilot)
        assert f"training · step {TRAIN_STEPS}" in screen_text(app), "this run's step is on screen"


def test_snapshot_two_seed_groups_overlaid(snap_compare, registry, tmp_path):
    """The chart with both learning rates' seed groups (mean and band) and their legend."""

    async def run_before(pilot) -> None:
        await steady(pilot)
        await open_screen(pilot, "f11", RunsScreen)
        await pilot.press(*SHOW_THE_OTHER_THREE)
        await pilot.press("escape")
        await wait_for(pilot, lambda: len(pane(pilot.app).curve.overlays) == 2, what="two seed groups")
        await wait_for(pilot, lambda: chart_drawn(pilot.app), what="the chart")
        await quiet(pilot)

    assert snap_compare(lab_app(tmp_path), terminal_size=TALL, run_before=run_before)


@sync
async def test_the_x_axis_toggle_draws_the_live_run_and_the_overlays_along_seconds_and_tokens(registry, tmp_path):
    async with ready(lab_app(tmp_path), size=TALL) as (app, pilot):
        curve = pane(app).curve
        await drawn(pilot, "the default overlay", lambda: curve.overlays)
        await pilot.press("f12")
        await drawn(pilot, "the time axis", lambda: curve.axis == "time")
        [line] = curve.overlays
        assert line.xs == [wall_s(2, step) for step in EVALS]
        xs, _ = curve.train_points("time")
        assert xs[:3] == [0.25, 0.5, 0.75], "the live run's seconds of training (the fake's 0.25 s a step)"
        assert "seconds" in pane(app).chart.render().plain

        await run_command(pilot, "x axis", "Runs: x axis")  # the palette's command, as f12
        await drawn(pilot, "the tokens axis", lambda: curve.axis == "tokens")
        assert curve.overlays[0].xs == [step * TOKENS_PER_STEP for step in EVALS]
        xs, _ = curve.train_points("tokens")
        assert curve.tokens_per_step == TOKENS_PER_STEP and xs[-1] == TRAIN_STEPS * TOKENS_PER_STEP
        await pilot.press("f12")
        await drawn(pilot, "the steps axis again", lambda: curve.axis == "steps")
        assert curve.overlays[0].xs == list(EVALS)


@sync
async def test_a_corrupt_registry_is_one_line_and_left_as_it_is(tmp_path, monkeypatch):
    data = tmp_path / "data"
    data.mkdir()
    bad = data / "runs.sqlite"
    bad.write_bytes(b"not a database, " * 64)
    monkeypatch.setenv("TUI_GPT_DATA", str(data))
    async with ready(lab_app(tmp_path), size=TALL) as (app, pilot):
        await wait_for(pilot, lambda: any(n.title == "Run registry" for n in app._notifications), what="the notice")
        [note] = [n for n in app._notifications if n.title == "Run registry"]
        assert str(bad) in note.message and "\n" not in note.message
        await pilot.press("f11")  # asked again: the same line, no screen, no crash
        await wait_for(pilot, lambda: len([n for n in app._notifications if n.title == "Run registry"]) == 2)
        assert not isinstance(app.screen, RunsScreen) and not pane(app).curve.overlays
    assert bad.read_bytes() == b"not a database, " * 64


def test_the_live_run_is_found_by_its_own_record_and_left_out(registry, tmp_path):
    """The app's trainer records the live run (running, kind app, saving to the app's folder): not an overlay."""
    from tui_gpt.app.earlier_runs.overlays import find

    ready, out = build(FAKE_SPEC).ready, str(tmp_path / "run")
    with Registry() as reg:
        sink = RegistrySink(reg)
        info = RunInfo("app", settings_of(FAKE_SPEC), "char", "fables (bundled)", ready.corpus["digest"], "", out)
        sink.start(info)  # in this process, so it is still running
        found = find(ready, out, asked=False)
        assert found.live.id == sink.id == 6 and [run.id for run in found.runs] == [4, 3, 2, 1]
        sink.finish(RunEnd("stopped", 10, 1.0, 1.0))  # a reset ends it: then it is an earlier run like any other
        assert [run.id for run in find(ready, out, asked=False).runs] == [6, 4, 3, 2, 1]


def test_no_registry_is_no_overlay_until_a_person_asks(tmp_path, monkeypatch):
    from tui_gpt.app.earlier_runs.overlays import find
    from tui_gpt.errors import TuiGptError

    monkeypatch.setenv("TUI_GPT_DATA", str(tmp_path / "none"))
    ready = build(FAKE_SPEC).ready
    assert find(ready, "out", asked=False).runs == []
    with pytest.raises(TuiGptError, match="no run registry yet"):
        find(ready, "out", asked=True)
    assert not (tmp_path / "none").exists(), "reading never creates the registry"
