"""The overfitting experiment (shift+f2, #26 goal 7), driven through the keys a person presses, with the fake trainer.

The fake opens real runs: the one-fable run trains on the bundled fable, and the way back resumes from the
checkpoint the experiment saved before switching.
"""

from __future__ import annotations

from pathlib import Path

from fake_trainer import TRAIN_STEPS, FakeTrainer
from pilot import evaluations, lab_app, open_screen, ready, settle, shown, sync, text_of, wait_for, wait_ready

from tui_gpt.app.lab.overfit import FABLE, LABEL
from tui_gpt.app.screens.confirm import ConfirmScreen
from tui_gpt.app.screens.help import HELP, HelpScreen
from tui_gpt.link.protocol import Save

FOOTNOTE = "shift+f2: back to your run"


async def switch(pilot, key: str = "shift+f2") -> None:
    """Press `key`, read the question, say yes, and wait for the one-fable run."""
    app = pilot.app
    await open_screen(pilot, key, ConfirmScreen)
    question = shown(app)
    assert "Overfit on purpose? Your run is saved to" in question and "ONE fable alone" in question
    assert "Press shift+f2 again to go back to your run" in question
    await pilot.press("y")
    await wait_for(pilot, lambda: app.state.spec.sources == [FABLE], what="the one-fable run")
    await wait_ready(pilot, ghost=False)


@sync
async def test_overfit_one_fable_and_back_to_the_saved_run(tmp_path):
    async with ready(lab_app(tmp_path, prompt="The fox"), ghost=False) as (app, pilot):
        client: FakeTrainer = app.client
        before = app.state.spec
        out = app.state.out
        await switch(pilot)
        # The run was saved first, to its folder, and then reset to one fable, from scratch.
        assert client.commands[0] == Save(out) and (Path(out) / "config.json").exists()
        assert len(client.resets) == 1
        spec = client.resets[0]
        assert spec.sources == [FABLE] and spec.resume is None and spec.dropout == 0.0
        assert (spec.n_layer, spec.n_embd, spec.tokenizer) == (before.n_layer, before.n_embd, before.tokenizer)
        assert app.state.ready.corpus["name"] == "one fable (the fox and the dog)"
        # Labelled while it runs: the title, the training pane's border, the hint.
        assert app.sub_title == f"{LABEL} ({FOOTNOTE})" and LABEL in shown(app)
        assert app.query_one("#training").has_class("-overfit")
        hints = app.query_one("#hints")
        tokens = app.state.ready.corpus["train_tokens"]
        await wait_for(pilot, lambda: "too little to learn a language" in text_of(hints), what="the watch hint")
        assert text_of(hints).startswith(f"one fable is only ~{tokens} tokens")

        # Train falls, val rises: the hint says what happened, in a learner's words.
        client._emit(evaluations([(200, 1.2, 2.6), (250, 0.6, 3.4), (300, 0.3, 5.1)]))
        await wait_for(pilot, lambda: "learned it by heart" in text_of(hints), what="the memorized hint")
        memo = (
            f"one fable is ~{tokens} tokens: the model has learned it by heart (train 0.30) but cannot guess a new "
            "sentence (val 5.10); this is overfitting: more text, dropout, or a smaller model help"
        )
        assert text_of(hints).startswith(memo), "first, in place of the generic overfitting hint"
        assert "is rising while train falls" not in text_of(hints)

        # The way back: the same key, no question; a reset that resumes from the checkpoint saved before.
        await pilot.press("shift+f2")
        await wait_for(pilot, lambda: len(client.resets) == 2, what="the reset back")
        back = client.resets[1]
        assert back.resume == str(Path(out).resolve()) or Path(back.resume).resolve() == Path(out).resolve()
        assert back.sources == before.sources
        await wait_for(pilot, lambda: app.state.spec.sources == before.sources, what="the run back")
        await wait_ready(pilot, step=None, ghost=False)
        assert app.state.ready.step == 2 * TRAIN_STEPS, "resumed at the saved step (the fake then trains on)"
        assert not isinstance(app.screen, ConfirmScreen)
        assert app.sub_title == "" and LABEL not in shown(app)
        assert not app.query_one("#training").has_class("-overfit")
        notes = [str(n.message) for n in app._notifications]
        assert any(memo in n and f"Back to your run: resuming from {back.resume}" in n for n in notes), notes
        await wait_for(pilot, lambda: "too little" not in text_of(hints), what="the usual hints")


@sync
async def test_the_terminal_key_for_shift_f2_and_the_help(tmp_path):
    async with ready(lab_app(tmp_path), ghost=False) as (app, pilot):
        await open_screen(pilot, "f1", HelpScreen)
        assert "## Overfitting on purpose (shift+f2)" in HELP, "the help's section (below the fold)"
        assert "| `shift+f2` | Lab: overfit one fable |" in HELP, "its key, once: f14 is the terminal's name for it"
        await pilot.press("escape")
        await settle(pilot)
        await open_screen(pilot, "f14", ConfirmScreen)  # what xterm sends for shift+f2
        await pilot.press("n")
        await settle(pilot)
        assert app.client.resets == [] and Save not in app.client.kinds(), "no: nothing saved, nothing reset"
        assert app.sub_title == ""


@sync
async def test_a_run_that_cannot_be_saved_is_not_left(tmp_path):
    async with ready(lab_app(tmp_path, save_fails="No space left on device"), ghost=False) as (app, pilot):
        await open_screen(pilot, "shift+f2", ConfirmScreen)
        await pilot.press("y")
        await wait_for(
            pilot,
            lambda: any("experiment did not start" in str(n.message) for n in app._notifications),
            what="the failed save's message",
        )
        note = next(str(n.message) for n in app._notifications if "experiment did not start" in str(n.message))
        assert "No space left on device" in note
        assert app.client.resets == [] and app.state.spec.sources == ["fables"]
        assert app.lab.overfit.leaving is None and app.lab.overfit.back is None
        # Pressing the key again asks again (not a way back to a run that was never left).
        await open_screen(pilot, "shift+f2", ConfirmScreen)
