"""The circuits experiment (shift+f4, #28), driven through the keys a person presses, with the fake trainer.

The fake opens real runs: the circuits run is a real 2-layer model on the generated task:induction text, and
the way back resumes from the checkpoint the experiment saved before switching.
"""

from __future__ import annotations

from pathlib import Path

from fake_trainer import FakeTrainer
from pilot import lab_app, open_screen, ready, settle, shown, sync, wait_for, wait_ready

from tui_gpt.app.lab.circuits import LABEL
from tui_gpt.app.lab.heads_view import HeadsScreen
from tui_gpt.app.screens.confirm import ConfirmScreen
from tui_gpt.app.screens.help import HELP
from tui_gpt.link.protocol import Save
from tui_gpt.settings import INDUCTION_TASK, circuits_spec

STEPS = 20  # the fake's real training steps per run: enough for a model, a test's worth of time


@sync
async def test_circuits_resets_into_the_experiment_opens_the_heads_view_and_goes_back(tmp_path):
    async with ready(lab_app(tmp_path, steps=STEPS), step=STEPS, ghost=False) as (app, pilot):
        client: FakeTrainer = app.client
        before, out = app.state.spec, app.state.out
        await open_screen(pilot, "shift+f4", ConfirmScreen)
        question = shown(app)
        assert "Watch an induction head form? Your run is saved to" in question and INDUCTION_TASK in question
        assert "Press shift+f4 again to go back to your run" in question
        await pilot.press("y")
        await wait_for(pilot, lambda: app.state.spec.sources == [INDUCTION_TASK], what="the circuits run")
        await wait_ready(pilot, step=STEPS, ghost=False)
        # Saved first, then reset into the one spec `tui-gpt circuits` trains too: 2 layers, characters, fresh.
        assert client.commands[0] == Save(out) and (Path(out) / "config.json").exists()
        assert client.resets == [circuits_spec(seed=0)]
        spec = client.resets[0]
        assert (spec.n_layer, spec.tokenizer, spec.resume, spec.train.head_interval) == (2, "char", None, 50)
        assert app.state.ready.corpus["name"].startswith(INDUCTION_TASK)
        # The heads view is open on it, and the title says what runs.
        await wait_for(pilot, lambda: isinstance(app.screen, HeadsScreen), what="the heads view")
        assert app.sub_title == f"{LABEL} (shift+f4: back to your run)"

        # The way back: the same key, no question; a reset that resumes from the checkpoint saved before.
        await pilot.press("escape")
        await settle(pilot)
        await pilot.press("shift+f4")
        await wait_for(pilot, lambda: len(client.resets) == 2, what="the reset back")
        back = client.resets[1]
        assert Path(back.resume).resolve() == Path(out).resolve() and back.sources == before.sources
        await wait_for(pilot, lambda: app.state.spec.sources == before.sources, what="the run back")
        assert app.sub_title == "" and not isinstance(app.screen, ConfirmScreen)
        notes = [str(n.message) for n in app._notifications]
        said = "No induction head formed yet in the circuits run: give it a few minutes."
        assert any(said in n and f"Back to your run: resuming from {back.resume}" in n for n in notes), notes


@sync
async def test_the_terminal_key_for_shift_f4_asks_and_no_leaves_the_run(tmp_path):
    async with ready(lab_app(tmp_path, steps=STEPS), step=STEPS, ghost=False) as (app, pilot):
        assert "| `shift+f4` | Lab: watch an induction head form |" in HELP, "its key, once: f16 is the terminal's"
        await open_screen(pilot, "f16", ConfirmScreen)  # what xterm sends for shift+f4
        await pilot.press("n")
        await settle(pilot)
        assert app.client.resets == [] and Save not in app.client.kinds(), "no: nothing saved, nothing reset"
        assert app.sub_title == ""
