"""Pilot tests of the app: keys in, widget state out. A fake in-process trainer unless stated."""

from __future__ import annotations

import math
import re
import shutil
import sys
import threading
from pathlib import Path

import pytest
from fake_trainer import FAKE_SPEC, TINY_TEXT, TRAIN_STEPS, FakeTrainer, fake_spec, make_app
from pilot import (
    SIZE,
    open_palette,
    palette_options,
    ready,
    run_command,
    running,
    screen_text,
    settle,
    steady,
    sync,
    text_of,
    token_view,
    wait_for,
    wait_ready,
)

from tui_gpt.app.gpt_app import GPTApp
from tui_gpt.app.prompt_probes import AHEAD_THREAD
from tui_gpt.app.screens.confirm import ConfirmScreen
from tui_gpt.app.screens.help import HelpScreen
from tui_gpt.app.widgets.attention import AttentionMap
from tui_gpt.app.widgets.prompt import PromptInput
from tui_gpt.app.widgets.topk import TopKBars
from tui_gpt.app.widgets.training import TrainingPane
from tui_gpt.engine.session import RunSpec
from tui_gpt.link.protocol import Pause, Resume, Save, Step


def guesses(app: GPTApp) -> list[tuple[int, float]]:
    return [(g.id, round(g.prob, 6)) for g in app.query_one(TopKBars).guesses]


def examples(app: GPTApp) -> list[tuple[str, str]]:
    """The examples pane's rows as (prefix, target) token texts."""
    pane = app.query_one("#examples-rows")
    return [("".join(pane.labels[: r.position]), pane.labels[r.position]) for r in pane.rows]


def strips(app: GPTApp) -> list[list]:
    return [list(s) for s in app.query_one(AttentionMap)._strips]


# ---- probing -------------------------------------------------------------------


@sync
async def test_typing_changes_the_topk(tmp_path):
    async with ready(make_app(tmp_path)) as (app, pilot):
        prompt = app.query_one(PromptInput)
        assert prompt.has_focus
        before = guesses(app)
        assert len(before) == app.probe_settings.top_k == 10
        await pilot.press(*" fox ran")
        await settle(pilot)
        assert prompt.value == "The quick brown fox ran"
        after = guesses(app)
        assert after and after != before
        # The bars are exactly the model's guesses for the new text.
        expect = app.state.replica.analyze(
            prompt.value, app.probe_settings.top_k, app.probe_settings.temperature
        ).prediction.guesses
        assert after == [(g.id, round(g.prob, 6)) for g in expect]
        assert text_of(app.query_one("#prompt-info")).startswith(f"{len(prompt.value)} tokens · step {TRAIN_STEPS}")


@sync
async def test_examples_table_lists_every_prefix_and_the_mean_loss(tmp_path):
    async with ready(make_app(tmp_path, prompt="The fox ran")) as (app, pilot):
        await token_view(pilot)
        # char tokenizer: one example per character after the first.
        rows = examples(app)
        assert len(rows) == len("The fox ran") - 1
        assert rows[0] == ("T", "h") and rows[-1] == ("The fox ra", "n")
        loss = app.state.replica.analyze("The fox ran", 1, 1.0).loss
        assert f"mean -log p = {loss:.3f}" in text_of(app.query_one("#examples-mean"))
        # Nothing typed: no examples, and a hint instead of a mean.
        await pilot.press("ctrl+u")
        await settle(pilot)
        assert app.query_one(PromptInput).value == ""
        assert examples(app) == []
        assert "type at least two tokens" in text_of(app.query_one("#examples-mean"))
        assert app.query_one(TopKBars).guesses, "an empty prompt still has next-token guesses"


@sync
async def test_examples_can_come_from_a_corpus_passage(tmp_path):
    async with ready(make_app(tmp_path)) as (app, pilot):
        pane = app.query_one("#examples")
        assert "your prompt" in pane.border_title
        await pilot.press("ctrl+t")
        await settle(pilot)
        assert "corpus passage 1" in pane.border_title
        passage = app.state.ready.corpus["passages"][0]
        rows = examples(app)
        # A passage is block_size + 1 tokens; the model sees the last block_size of them.
        assert FAKE_SPEC.block_size - 1 <= len(rows) <= FAKE_SPEC.block_size
        assert passage.endswith(rows[-1][0] + rows[-1][1])
        await pilot.press(*["ctrl+t"] * 5)
        await settle(pilot)
        assert "your prompt" in pane.border_title


@pytest.mark.parametrize(
    ("tokenizer", "prompt"),
    [("char", "The quick brown"), ("bpe", "Once upon a ti")],
)
@sync
async def test_tab_accepts_one_token_and_right_the_whole_ghost(tmp_path, tokenizer, prompt):
    async with ready(make_app(tmp_path, spec=fake_spec(tokenizer=tokenizer), prompt=prompt)) as (app, pilot):
        inp = app.query_one(PromptInput)
        old, ghost, first = inp.value, inp.ghost, inp.ghost_first
        assert old == prompt and ghost and first and ghost.startswith(first)
        assert inp._suggestion == old + ghost, "what is shown after the cursor is the ghost"
        assert inp.cursor_at_end

        await pilot.press("tab")
        assert inp.value == old + first
        assert inp.has_focus, "tab must not move the focus"
        await wait_for(pilot, lambda: inp.ghost, what="the next ghost text")
        await settle(pilot)

        old, ghost = inp.value, inp.ghost
        shown = inp._suggestion
        await pilot.press("right")
        assert inp.value == old + ghost == shown
        assert inp.cursor_position == len(inp.value)


@sync
async def test_tab_and_right_do_not_accept_with_the_cursor_inside_the_text(tmp_path):
    async with ready(make_app(tmp_path)) as (app, pilot):
        inp = app.query_one(PromptInput)
        old = inp.value
        await pilot.press("home", "tab")
        assert inp.value == old and inp.cursor_position == 0
        await pilot.press("right")
        assert inp.value == old and inp.cursor_position == 1


@sync
async def test_layer_and_head_keys_change_the_heatmap(tmp_path):
    async with ready(make_app(tmp_path)) as (app, pilot):
        amap = app.query_one(AttentionMap)
        assert (amap.n_layer, amap.n_head) == (2, 2)
        assert len(amap.labels) == len("The quick brown")
        start = strips(app)
        assert (amap.layer_index, amap.head_index) == (0, 0)
        assert "layer 1/2 · head 1/2" in amap.border_title

        await pilot.press("ctrl+l")
        assert (amap.layer_index, amap.head_index) == (1, 0)
        assert "layer 2/2 · head 1/2" in amap.border_title
        layer2 = strips(app)
        assert layer2 != start

        await pilot.press("ctrl+g")
        assert (amap.layer_index, amap.head_index) == (1, 1)
        assert strips(app) not in (start, layer2)

        await pilot.press("ctrl+l", "ctrl+g")  # both wrap around
        assert (amap.layer_index, amap.head_index) == (0, 0)
        assert strips(app) == start
        assert app.query_one(PromptInput).value == "The quick brown", "the keys must not type"


@sync
async def test_attention_pane_keys_when_focused(tmp_path):
    async with ready(make_app(tmp_path)) as (app, pilot):
        amap = app.query_one(AttentionMap)
        amap.focus()
        await settle(pilot)
        start = strips(app)
        await pilot.press("l")
        assert amap.layer_index == 1 and strips(app) != start
        await pilot.press("h")
        assert amap.head_index == 1
        await pilot.press("v")
        assert amap.mode == "heads" and "all heads" in amap.border_title
        await pilot.press("v")
        assert amap.mode == "mask" and "causal mask" in amap.border_title
        await pilot.press("v")
        assert amap.mode == "head"
        assert app.query_one(PromptInput).value == "The quick brown", "l/h/v went to the map, not the prompt"


@sync
async def test_causal_mask_is_drawn_above_the_diagonal(tmp_path):
    async with ready(make_app(tmp_path, prompt="abcd"), ghost=False) as (app, _):
        rows = [s.text for s in app.query_one(AttentionMap)._strips[2:]]
        assert len(rows) == 4
        for i, row in enumerate(rows):
            cells = row[9:]  # after the 8-character label and a space
            assert cells.count("··") == 3 - i, row  # query i sees keys 0..i only


@sync
async def test_temperature_and_topk_keys(tmp_path):
    async with ready(make_app(tmp_path)) as (app, pilot):
        bars = app.query_one(TopKBars)
        base = bars.guesses
        assert bars.temperature == 1.0

        await pilot.press("up")
        assert app.probe_settings.temperature == bars.temperature == 1.1
        assert "T=1.10" in bars.border_title
        hot = bars.guesses
        assert [g.logit for g in hot] == [g.logit for g in base], "temperature must not change the logits"
        assert hot[0].prob < base[0].prob, "a higher temperature flattens the distribution"

        await pilot.press("down", "down")
        assert bars.temperature == 0.9
        cold = bars.guesses
        assert cold[0].prob > base[0].prob

        for _ in range(15):
            await pilot.press("down")
        assert bars.temperature == 0.1, "temperature is clamped at 0.1"

        await pilot.press("ctrl+up")
        assert app.probe_settings.top_k == bars.k == 11 and len(bars.guesses) == 11
        await pilot.press("ctrl+down", "ctrl+down")
        assert bars.k == 9 and len(bars.guesses) == 9
        assert "k=9" in bars.border_title


@sync
async def test_prompt_longer_than_the_context(tmp_path):
    block = FAKE_SPEC.block_size
    async with ready(make_app(tmp_path, prompt="x" * (block - 2)), ghost=False) as (app, pilot):
        info = app.query_one("#prompt-info")
        assert "sees only" not in text_of(info)
        await pilot.press(*"abcde")
        await settle(pilot)
        n = block + 3
        assert text_of(info) == f"prompt is {n} tokens: the model sees only the last {block} (its context) · step 150"
        assert len(app.query_one(AttentionMap).labels) == block
        assert app.query_one(AttentionMap).dropped == 3
        assert f"the last {block} (its context)" in screen_text(app)


@sync
async def test_a_prompt_wider_than_its_field_scrolls_to_the_cursor(tmp_path):
    start = "the fox ran to the river and the dog sat by the door while the hen found a seed"
    async with ready(make_app(tmp_path, prompt=start), ghost=False) as (app, pilot):
        await pilot.press(*" END")
        await settle(pilot)
        inp = app.query_one(PromptInput)
        region = inp.content_region
        assert inp.value == start + " END" and len(inp.value) > region.width
        line = screen_text(app).splitlines()[region.y][region.x : region.right]
        assert "seed END" in line, line
        assert not line.startswith("the fox"), line


@sync
async def test_unicode_outside_the_vocabulary_does_not_break_probing(tmp_path):
    async with ready(make_app(tmp_path, prompt=""), ghost=False) as (app, pilot):
        await pilot.press(*"héllo ☃ ")
        await settle(pilot)
        assert app.query_one(PromptInput).value == "héllo ☃ "
        assert app.query_one(TopKBars).guesses
        assert getattr(app, "_exception", None) is None


# ---- screens, palette, sizes ------------------------------------------------------


@sync
async def test_help_screen_explains_the_three_ideas(tmp_path):
    async with ready(make_app(tmp_path)) as (app, pilot):
        await pilot.press("f1")
        await settle(pilot)
        assert isinstance(app.screen, HelpScreen)
        text = " ".join(screen_text(app).split())
        assert "Every prefix is a training example" in text
        assert "The loss is the cross-entropy of the true next token" in text
        assert "The causal mask keeps a position from seeing later ones" in text
        await pilot.press("escape")
        await settle(pilot)
        assert not isinstance(app.screen, HelpScreen)
        assert app.query_one(PromptInput).has_focus


COMMANDS = (
    "Pause or resume training",
    "Single training step",
    "Save checkpoint",
    "Load text…",
    "Reset model",
    "Tokenizer: char",
    "Tokenizer: bpe",
    "Tokenizer: word",
    "Model size: tiny",
    "Temperature up",
    "Attention: next layer",
    "Restart trainer",
    "Help: how a GPT learns",
)


@sync
async def test_command_palette_lists_and_runs_our_commands(tmp_path):
    async with ready(make_app(tmp_path)) as (app, pilot):
        titles = [c.title for c in app.get_system_commands(app.screen)]
        for title in COMMANDS:
            assert title in titles
        assert "Quit the application" in titles or any("Quit" in t for t in titles)

        await open_palette(pilot, "tokeni")
        await wait_for(
            pilot,
            lambda: (
                {"Tokenizer: char", "Tokenizer: bpe", "Tokenizer: word"}
                <= {o.split("\n")[0] for o in palette_options(app)}
            ),
            what="the tokenizer commands in the palette",
        )
        await pilot.press("escape")
        await settle(pilot)

        await run_command(pilot, "pause or", "Pause or resume training")
        await wait_for(pilot, lambda: app.run_status.paused, what="pause from the palette")
        assert app.client.kinds()[-1] is Pause


@sync
async def test_tokenizer_switch_from_the_palette_resets_the_run(tmp_path):
    async with ready(make_app(tmp_path)) as (app, pilot):
        old_replica = app.state.replica
        await run_command(pilot, "Tokenizer: bpe", "Tokenizer: bpe")
        await wait_for(pilot, lambda: isinstance(app.screen, ConfirmScreen), what="the confirmation")
        await pilot.press("y")
        await wait_for(
            pilot, lambda: app.state.replica is not None and app.state.replica is not old_replica, what="the new model"
        )
        await wait_ready(pilot)
        client: FakeTrainer = app.client
        assert [s.tokenizer for s in client.resets] == ["bpe"]
        assert app.state.spec.tokenizer == "bpe"
        assert app.state.replica.tokenizer.vocab_size == app.state.ready.corpus["vocab_size"] > 100
        assert "bpe vocab" in text_of(app.query_one("#corpus-info"))


@sync
async def test_declining_a_reset_keeps_the_run(tmp_path):
    async with ready(make_app(tmp_path)) as (app, pilot):
        replica = app.state.replica
        app.action_reset_model()
        await wait_for(pilot, lambda: isinstance(app.screen, ConfirmScreen), what="the confirmation")
        await pilot.press("n")
        await settle(pilot)
        assert app.state.replica is replica and app.client.resets == []


@sync
async def test_smaller_model_after_viewing_a_deep_layer_and_head(tmp_path):
    # Start with 4 layers and 4 heads, look at layer 4 head 4, then pick "Model size: tiny" (2 and 2).
    deep = make_app(tmp_path, spec=fake_spec(n_layer=4, n_head=4), steps=3)
    async with ready(deep, step=3, ghost=False) as (app, pilot):
        old = app.state.replica
        await pilot.press(*["ctrl+l", "ctrl+g"] * 3)
        amap = app.query_one(AttentionMap)
        assert (amap.layer_index, amap.head_index) == (3, 3)
        await run_command(pilot, "Model size: tiny", "Model size: tiny")
        await wait_for(pilot, lambda: isinstance(app.screen, ConfirmScreen), what="the confirmation")
        await pilot.press("y")
        await wait_for(pilot, lambda: app.state.replica not in (None, old), what="the new model")
        await wait_ready(pilot, step=3, ghost=False)
        assert (amap.n_layer, amap.n_head) == (2, 2)
        assert amap.layer_index < 2 and amap.head_index < 2
        assert "layer 1/2 · head 1/2" in amap.border_title
        assert amap._strips and strips(app) != []


@sync
async def test_tiny_terminal_shows_a_message_instead_of_crashing(tmp_path):
    async with ready(make_app(tmp_path), size=(50, 15), ghost=False) as (app, pilot):
        assert app.screen.has_class("-too-small")
        text = " ".join(screen_text(app).split())
        assert "Terminal too small: 50x15" in text
        await pilot.press(*" fox")  # keys still work
        await settle(pilot)
        assert app.query_one(PromptInput).value == "The quick brown fox"


@sync
async def test_examples_rows_stay_one_line_each_in_a_narrow_pane(tmp_path):
    async with ready(make_app(tmp_path), size=(100, 30)) as (app, pilot):
        await token_view(pilot)
        region = app.query_one("#examples-rows").content_region
        lines = screen_text(app).splitlines()[region.y : region.bottom]
        pane = [line[region.x : region.right] for line in lines]
        assert "prefix" in pane[0] and "rank" in pane[0], pane[0]
        wrapped = [line for line in pane if re.match(r"\s*\d\.\d{3}\s+\d+\.\d\d\s+\d+\s*$", line)]
        assert not wrapped, "\n".join(pane)


@sync
async def test_enlarging_a_tiny_terminal_shows_the_panes(tmp_path):
    async with ready(make_app(tmp_path), size=(50, 15), ghost=False) as (app, pilot):
        assert app.screen.has_class("-too-small")
        await token_view(pilot)
        await pilot.resize_terminal(160, 48)
        await settle(pilot)
        assert not app.screen.has_class("-too-small")
        text = screen_text(app)
        assert "Terminal too small" not in text
        assert "Next token" in text


@sync
async def test_shrinking_the_terminal_shows_the_message(tmp_path):
    async with ready(make_app(tmp_path), ghost=False) as (app, pilot):
        await pilot.resize_terminal(50, 15)
        await settle(pilot)
        assert app.screen.has_class("-too-small")
        assert "Terminal too small: 50x15" in " ".join(screen_text(app).split())


@sync
async def test_exit_while_the_app_timers_tick(tmp_path, monkeypatch):
    # The app's own intervals, only faster, so a timer that outlived the screen would fire on every exit.
    fast = TrainingPane.set_interval
    monkeypatch.setattr(
        TrainingPane, "set_interval", lambda self, interval, callback, **kw: fast(self, 0.001, callback, **kw)
    )
    for _ in range(3):
        app = make_app(tmp_path)
        async with app.run_test(size=SIZE) as pilot:
            await wait_ready(pilot, settled=False)  # then exit at once, the timers ticking
    # An exit can leave the think-ahead thread (a daemon) in a forward pass: let it end, or the interpreter
    # aborts under it ("terminate called without an active exception") when this test is the process's last.
    for thread in threading.enumerate():
        if thread.name == AHEAD_THREAD:
            thread.join(30)


@sync
async def test_quit_before_the_loss_chart_mounts(tmp_path):
    # The chart mounts after the first frame; quitting at once must not crash on the way out.
    for _ in range(3):
        app = make_app(tmp_path)
        app.call_later(app.exit)  # runs as soon as the app starts, before the chart's slot is filled
        async with app.run_test(size=SIZE):
            pass
        assert app.return_code == 0


# ---- training controls with the fake trainer --------------------------------------------


@sync
async def test_the_legend_shows_the_val_loss_in_bits_per_byte(tmp_path):
    async with ready(make_app(tmp_path)) as (app, pilot):
        pane = app.query_one(TrainingPane)
        assert "bpb" not in text_of(app.query_one("#legend"))  # the fake's history does not say its bytes
        pane.curve.set_history({**pane.curve.history(), "val_bytes_per_token": 2.0})
        pane.curve.add([{"step": 151, "loss": 2.0, "lr": 1e-3, "val_loss": 2.0 * math.log(2)}])
        app.run_status.show()
        await settle(pilot)
        assert "━ val (1.000 bpb)" in text_of(app.query_one("#legend"))  # 2 ln 2 nats a token, 2 bytes a token


@sync
async def test_the_pane_shows_epochs_and_the_best_val_loss(tmp_path):
    """Epochs are tokens trained over the train split's tokens (both from Ready); the chart marks the best val
    loss with a marker that the numbers under it repeat, and an overfitting hint names its step."""
    async with ready(make_app(tmp_path)) as (app, pilot):
        await steady(pilot)
        pane = app.query_one(TrainingPane)
        corpus = app.client.built.ready.corpus
        epoch = TRAIN_STEPS * corpus["tokens_per_step"] / corpus["train_tokens"]
        stats = text_of(app.query_one("#train-stats"))
        best = pane.curve.best_val()
        assert best is not None and best[0] == 150  # the fake's curve only falls: its last evaluation is best
        assert f"step 150 · epoch {epoch:.{2 if epoch < 1 else 1}f} · train " in stats
        assert f"\n◆ best val {best[1]:.3f} at step 150 · 12,345 tok/s" in stats
        assert "◆" in screen_text(app), "the chart marks the best val loss"
        # Val rises twice while train falls: the marker stays at step 150 and the hint names it.
        pane.curve.add(
            [
                {"step": 200, "loss": 1.5, "lr": 1e-2, "val_loss": best[1] + 0.2, "eval_train_loss": 1.5},
                {"step": 250, "loss": 1.2, "lr": 1e-2, "val_loss": best[1] + 0.5, "eval_train_loss": 1.2},
            ]
        )
        await wait_for(pilot, lambda: "overfitting" in text_of(app.query_one("#hints")), what="the hint")
        app.run_status.show()
        assert f"◆ best val {best[1]:.3f} at step 150" in text_of(app.query_one("#train-stats"))
        assert f"val was best at step 150 ({best[1]:.2f})" in text_of(app.query_one("#hints"))
        assert pane.curve.best_point("steps") == (150, best[1])
        # A small terminal's narrow pane cuts each stats line short: neither pushes the other out.
        await pilot.resize_terminal(80, 24)
        await settle(pilot)
        screen = screen_text(app)
        assert "training · step 150" in screen and "epoch " in screen and "◆ best val" in screen


@sync
async def test_pause_step_save_and_quit_with_the_fake_trainer(tmp_path):
    async with ready(make_app(tmp_path)) as (app, pilot):
        out = Path(app.state.out)
        client: FakeTrainer = app.client
        assert client.starts == [FAKE_SPEC]
        await wait_for(pilot, lambda: "tok/s" in text_of(app.query_one("#train-stats")), what="the stats line")
        stats = text_of(app.query_one("#train-stats"))
        assert re.match(r"training · step 150 · epoch 0\.\d\d · train ", stats)
        assert "12,345 tok/s" in stats and "0:37 elapsed" in stats and "val " in stats

        await pilot.press("ctrl+r")
        assert app.run_status.paused and client.kinds()[-1] is Pause
        assert text_of(app.query_one("#train-stats")).startswith("paused · step 150")

        await pilot.press("ctrl+n")
        await wait_for(pilot, lambda: app.run_status.step == TRAIN_STEPS + 1, what="one step")
        assert client.commands[-1] == Step(1)
        assert app.run_status.paused, "a single step leaves the run paused"
        await wait_for(pilot, lambda: app.state.replica.step == TRAIN_STEPS + 1, what="the new weights")
        assert f"step {TRAIN_STEPS + 1}" in text_of(app.query_one("#prompt-info"))

        await pilot.press("ctrl+r")
        assert not app.run_status.paused and client.kinds()[-1] is Resume

        await pilot.press("ctrl+s")
        await wait_for(pilot, lambda: app.run_status.saved is not None, what="Saved")
        assert client.commands[-1] == Save(str(out))
        assert (out / "trainer.json").exists() and (out / "model.safetensors").exists()
        assert app.run_status.saved.step == TRAIN_STEPS + 1
        shutil.rmtree(out)  # so the checkpoint found after quit is the one quit wrote

        await pilot.press("ctrl+q")
        await wait_for(pilot, lambda: not app.is_running, what="the app to exit")
    assert client.stops == [str(out)]
    assert (out / "trainer.json").exists(), "quit saves a checkpoint"
    assert not client.alive


async def asked(pilot) -> str:
    """The question of the ConfirmScreen that opens, once drawn. Read from its label, not the screen: one that
    names a folder wraps where the folder's length says (a short --basetemp split "no space left on device")."""
    await wait_for(pilot, lambda: isinstance(pilot.app.screen, ConfirmScreen), what="a question")
    await settle(pilot)
    label = pilot.app.screen.query_one(".question")
    assert label.region.height > 0, "the question is not drawn"
    return text_of(label)


@sync
async def test_a_failed_save_asks_before_quitting_and_offers_a_retry(tmp_path):
    full = make_app(tmp_path, save_fails="no space left on device; the previous checkpoint is intact")
    async with ready(full) as (app, pilot):
        await pilot.press("ctrl+s")  # a save that fails offers to try again
        question = await asked(pilot)
        assert "no space left on device" in question and "try again?" in question
        await pilot.press("y")
        await wait_for(pilot, lambda: app.client.kinds().count(Save) == 2, what="the retried save")
        await wait_for(pilot, lambda: isinstance(app.screen, ConfirmScreen), what="the retry question again")
        await pilot.press("n")
        await settle(pilot)
        await pilot.press("ctrl+q")  # the quit's save fails too: nothing is lost without asking
        assert "Quit without saving?" in await asked(pilot)
        await pilot.press("n")
        await settle(pilot)
        assert app.is_running and app.client.alive and app.final_save is None
        await pilot.press("ctrl+q")
        await wait_for(pilot, lambda: isinstance(app.screen, ConfirmScreen), what="the quit question again")
        await pilot.press("y")
        await wait_for(pilot, lambda: not app.is_running, what="the app to exit")
    assert app.final_save is None and not app.client.alive
    assert not (tmp_path / "run" / "trainer.json").exists()


@sync
async def test_quit_before_the_run_is_built_saves_nothing(tmp_path):
    app = make_app(tmp_path, fail="boom")  # the trainer never gets as far as Ready
    async with running(app, SIZE) as pilot:
        await wait_for(pilot, lambda: app.run_status.error == "boom", what="the error")
        await pilot.press("ctrl+q")
        await wait_for(pilot, lambda: not app.is_running, what="the app to exit")
    assert app.client.stops == [None] and not app.quitting.saves_on_quit
    assert not (tmp_path / "run").exists()


@sync
async def test_step_key_pauses_a_running_trainer_first(tmp_path):
    async with ready(make_app(tmp_path)) as (app, pilot):
        await pilot.press("ctrl+n")
        assert app.client.kinds()[-2:] == [Pause, Step]
        assert app.run_status.paused


@sync
async def test_losses_and_weights_update_the_panes(tmp_path):
    async with ready(make_app(tmp_path)) as (app, pilot):
        chart = app.query_one("#training").curve
        assert chart.steps == list(range(1, TRAIN_STEPS + 1))
        assert chart.eval_steps == [50, 100, 150]
        app.client.advance(10)
        await wait_for(pilot, lambda: app.run_status.step == TRAIN_STEPS + 10, what="the new losses")
        await wait_for(pilot, lambda: app.state.replica.step == TRAIN_STEPS + 10, what="the new weights")
        assert chart.steps[-1] == TRAIN_STEPS + 10
        await wait_for(
            pilot, lambda: f"step {TRAIN_STEPS + 10}" in text_of(app.query_one("#train-stats")), what="the stats"
        )


@sync
async def test_a_failing_trainer_shows_the_error_and_the_app_keeps_working(tmp_path):
    app = make_app(tmp_path, fail="boom")
    async with running(app, SIZE) as pilot:
        await wait_for(pilot, lambda: app.run_status.error == "boom", what="the error")
        await settle(pilot)
        stats = text_of(app.query_one("#train-stats"))
        assert "error: boom" in stats and stats.startswith("stopped")
        assert any("boom" in str(n.message) for n in app._notifications)
        await pilot.press(*" fox")
        assert app.query_one(PromptInput).value == "The quick brown fox"
        # Restart from the palette's command once the cause is gone.
        app.client.fail = None
        app.action_restart_trainer()
        await wait_ready(pilot)
        assert app.run_status.error is None
        assert "error" not in text_of(app.query_one("#train-stats"))
        assert len(app.client.starts) == 2


@sync
async def test_a_trainer_that_dies_after_ready_leaves_probing_working(tmp_path):
    async with ready(make_app(tmp_path)) as (app, pilot):
        app.client.fail_now("boom")
        await wait_for(pilot, lambda: app.run_status.error == "boom", what="the error")
        await settle(pilot)
        assert "error: boom" in text_of(app.query_one("#train-stats"))
        before = guesses(app)
        await pilot.press(*" fox")
        await settle(pilot)
        assert app.query_one(PromptInput).value == "The quick brown fox"
        assert guesses(app) != before
        await pilot.press("ctrl+r")  # commands to a dead trainer are dropped, not raised
        assert getattr(app, "_exception", None) is None


# ---- the command line ------------------------------------------------------------------


def test_run_app_exit_status_reflects_a_crash(tmp_path, monkeypatch):
    import io

    import tui_gpt.app.gpt_app
    import tui_gpt.link.client
    from tui_gpt.commands.cli import parser_app
    from tui_gpt.commands.launch import run_app

    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    class CrashingApp:
        """Stands in for GPTApp: Textual's App.run() returns after an unhandled error with return_code 1."""

        def __init__(self, spec: RunSpec, out: str, **options: object) -> None:
            self.return_code: int | None = None

        def run(self) -> None:
            self.return_code = 1

    text = tmp_path / "tiny.txt"
    text.write_text(TINY_TEXT, encoding="utf-8")
    monkeypatch.setattr(sys, "stdout", Terminal())
    monkeypatch.setattr(tui_gpt.link.client, "prepare", lambda: None)
    monkeypatch.setattr(tui_gpt.app.gpt_app, "GPTApp", CrashingApp)
    args = parser_app().parse_args([str(text), "--out", str(tmp_path / "out")])
    assert run_app(args) != 0


def test_the_training_pane_says_the_dropout_and_why_the_app_chose_it():
    from tui_gpt.app.widgets.training import dropout_text
    from tui_gpt.settings import RunSpec

    assert dropout_text(RunSpec(dropout=0.0)) == "dropout 0"
    chosen = RunSpec(dropout=0.1, dropout_note="medium text, 0.6 tokens a parameter")
    assert dropout_text(chosen) == "dropout 0.1: medium text, 0.6 tokens a parameter"
