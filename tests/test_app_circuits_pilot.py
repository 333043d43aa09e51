"""Pilot tests of the circuits views (#19, #28): the logit lens (f10) in tokens and words, with a real model."""

from __future__ import annotations

import re
import threading

from fake_trainer import FakeTrainer
from pilot import lab_app, open_screen, ready, run_command, screen_text, settle, sync, wait_for
from textual.widgets import Input

from tui_gpt.app.lab.logit_lens_view import LogitLensScreen
from tui_gpt.app.widgets.prompt import PromptInput
from tui_gpt.app.widgets.topk import TopKBars
from tui_gpt.probes.nextword import next_words
from tui_gpt.visible import visible


def layer_names(app) -> list[str]:
    """The layer column of the table, as drawn on screen."""
    return re.findall(r"│ (embed|layer \d+)(?: \*)? +│", screen_text(app))


@sync
async def test_the_logit_lens_follows_every_key_and_every_weight_update(tmp_path):
    async with ready(lab_app(tmp_path, prompt="The fox ran to th")) as (app, pilot):
        await pilot.press("ctrl+f")  # the top-k in tokens, to compare with the replica's last row
        await settle(pilot)
        top = app.query_one(TopKBars).guesses[0]
        await open_screen(pilot, "f10", LogitLensScreen)
        screen: LogitLensScreen = app.screen
        view = screen.last
        n_layer = app.state.replica.config.n_layer
        assert [r.layer for r in view.rows] == list(range(n_layer + 1))
        assert len(view.rows[0].guesses) == app.probe_settings.top_k
        # the last layer is the model's own answer: the top-k's first guess (at temperature 1)
        assert app.probe_settings.temperature == 1.0 and view.rows[-1].guesses[0].id == top.id == view.final_id
        assert abs(view.rows[-1].guesses[0].prob - top.prob) < 1e-5
        assert layer_names(app) == ["embed", *(f"layer {i}" for i in range(1, n_layer + 1))]
        assert screen.query_one(Input).has_focus and screen.query_one(Input).value == "The fox ran to th"

        await pilot.press("e")  # every key: a new table for the new prompt
        await settle(pilot)
        assert screen.text == "The fox ran to the" and screen.last is not view
        assert screen.last.ids[-1] == app.state.replica.tokenizer.encode("e")[0]

        before, step = screen.last, app.state.replica.step
        client: FakeTrainer = app.client
        client.advance(5)  # every weight update: new weights (the same values here) redraw it
        await wait_for(pilot, lambda: screen.last is not before, what="the redraw after new weights")
        await settle(pilot)
        assert app.state.replica.step == step + 5 and f"step {step + 5:,}" in screen_text(app)

        await pilot.press("escape")
        await settle(pilot)
        assert not isinstance(app.screen, LogitLensScreen)
        assert app.query_one(PromptInput).value == "The fox ran to th"  # the view's prompt is its own


@sync
async def test_the_logit_lens_is_in_the_palette(tmp_path):
    async with ready(lab_app(tmp_path)) as (app, pilot):
        await run_command(pilot, "logit", "Lab: logit lens")
        await wait_for(pilot, lambda: isinstance(app.screen, LogitLensScreen), what="the logit lens")


@sync
async def test_the_logit_lens_reads_words_like_the_next_word_pane_and_ctrl_f_shows_tokens(tmp_path):
    async with ready(lab_app(tmp_path, prompt="The fox ran to the ")) as (app, pilot):
        replica, bars = app.state.replica, app.query_one(TopKBars)
        await wait_for(pilot, lambda: bars.words is not None, what="the next words")
        await app.workers.wait_for_complete()
        pane = bars.words  # the Next word pane (the app opens in words), at temperature 1
        assert app.probe_settings.temperature == 1.0 and bars.by_word
        await open_screen(pilot, "f10", LogitLensScreen)
        screen: LogitLensScreen = app.screen
        assert screen.by_word  # the view opens in the app's words
        await wait_for(pilot, lambda: screen.last_words is not None, what="the lens in words")
        await settle(pilot)
        lens = screen.last_words
        n_layer = replica.config.n_layer
        assert len(lens.rows) == n_layer + 1
        # the last layer's words are the Next word pane's: the same search on the same logits
        assert [(w.text, round(w.prob, 9)) for w in lens.rows[-1].words] == [
            (w.text, round(w.prob, 9)) for w in pane.words
        ]
        shown = screen_text(app)
        assert layer_names(app) == ["embed", *(f"layer {i}" for i in range(1, n_layer + 1))]
        assert "next word after" in shown
        top = pane.words[0]
        assert f"{visible(top.text)} {top.prob:.2f}" in shown and f"{top.prob:.3f}" in shown  # bold, and p final

        await pilot.press("f")  # a key: the words search again, for the new text
        await wait_for(pilot, lambda: screen.shown is not None and screen.shown[2].endswith("the f"), what="new words")
        await settle(pilot)
        want = next_words(replica.model, replica.tokenizer, "The fox ran to the f", k=app.probe_settings.top_k)
        got = screen.last_words.rows[-1]
        assert got.typed == " f" and [w.text for w in got.words] == [w.text for w in want.words]

        await pilot.press("ctrl+f")  # tokens, as everywhere in the app: drawn in the key's frame
        await settle(pilot)
        assert not screen.by_word and screen.last.ids == replica.tokenizer.encode("The fox ran to the f")
        assert "next token after" in screen_text(app) and "rest of" not in screen_text(app)
        assert bars.by_word  # the view's toggle is its own: the app's pane still shows words
        await pilot.press("ctrl+f")
        await wait_for(pilot, lambda: screen.shown[3] and "rest of '·f' after" in screen_text(app), what="words again")
        await pilot.press("escape")
        await settle(pilot)
        assert not isinstance(app.screen, LogitLensScreen)


@sync
async def test_the_lens_in_words_searches_off_the_ui_thread_and_shows_the_newest_text(tmp_path):
    async with ready(lab_app(tmp_path, prompt="The fox ran to the ")) as (app, pilot):
        replica = app.state.replica
        on_ui: list[bool] = []
        search = replica.lens_words

        def recorded(text, k, cancelled=None):  # the real search, and the thread it runs on
            on_ui.append(threading.current_thread() is threading.main_thread())
            return search(text, k, cancelled)

        replica.lens_words = recorded
        await open_screen(pilot, "f10", LogitLensScreen)
        screen: LogitLensScreen = app.screen
        await pilot.press(*"river")  # a burst of keys: each starts a search and gives up the one before
        final = "The fox ran to the river"
        await wait_for(pilot, lambda: screen.shown is not None and screen.shown[2] == final, what="the last text")
        await app.workers.wait_for_complete()
        await settle(pilot)
        assert on_ui and not any(on_ui)  # never on the UI thread
        assert screen.shown[2] == final and screen.last_words.rows[-1].typed == " river"  # no older answer after it
        want = next_words(replica.model, replica.tokenizer, final, k=app.probe_settings.top_k)
        assert [w.text for w in screen.last_words.rows[-1].words] == [w.text for w in want.words]
