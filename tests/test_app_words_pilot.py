"""Pilot tests of the word view (the default), the word ghost, bursts of keys, and a key holding the trainer."""

from __future__ import annotations

import math
import threading

from fake_trainer import make_app
from pilot import ready, settle, sync, text_of, token_view, wait_for
from textual import events

from tui_gpt.app.widgets.example_rows import ExampleRows
from tui_gpt.app.widgets.examples_pane import ExamplesPane
from tui_gpt.app.widgets.prompt import PromptInput
from tui_gpt.app.widgets.topk import TopKBars
from tui_gpt.probes.nextword import next_words


async def words_for(pilot, text: str):
    """Wait until the next-word pane answers for `text`; its NextWords."""
    app = pilot.app
    bars = app.query_one(TopKBars)
    await wait_for(
        pilot, lambda: app.query_one(PromptInput).value == text and bars.words is not None, what="the next words"
    )
    await app.workers.wait_for_complete()
    await settle(pilot)
    return bars.words


@sync
async def test_the_pane_shows_next_words_by_default_and_flips_to_tokens(tmp_path):
    async with ready(make_app(tmp_path, prompt="The fox ran to the")) as (app, pilot):
        bars = app.query_one(TopKBars)
        found = await words_for(pilot, "The fox ran to the")
        assert bars.border_title.startswith("Next word")
        # The pane shows the engine's own answer for this text, with the other mass.
        expect = next_words(
            app.state.replica.model, app.state.replica.tokenizer, "The fox ran to the", k=app.probe_settings.top_k
        )
        assert [(w.text, round(w.prob, 6)) for w in found.words] == [(w.text, round(w.prob, 6)) for w in expect.words]
        shown = text_of(bars)
        assert "other words" in shown and f"{found.words[0].prob:.1%}".rjust(6) in shown
        assert math.isclose(sum(w.prob for w in found.words) + found.other, 1.0, abs_tol=1e-6)
        await token_view(pilot)
        assert bars.border_title.startswith("Next token") and "other words" not in text_of(bars)
        await pilot.press("ctrl+f")
        await settle(pilot)
        assert bars.border_title.startswith("Next word")


@sync
async def test_the_ghost_completes_the_word_then_offers_the_next(tmp_path):
    async with ready(make_app(tmp_path, prompt="The fox ran to the riv")) as (app, pilot):
        found = await words_for(pilot, "The fox ran to the riv")
        prompt = app.query_one(PromptInput)
        assert found.typed == " riv" and all(w.text.startswith(" riv") for w in found.words)
        assert prompt.ghost == found.words[0].text[len(" riv") :]
        await pilot.press("right")  # accept the whole ghost word
        await settle(pilot)
        assert prompt.value == "The fox ran to the riv" + found.words[0].text[len(" riv") :]


@sync
async def test_the_examples_word_view_relates_word_and_token_losses(tmp_path):
    async with ready(make_app(tmp_path, prompt="The fox ran to the river")) as (app, pilot):
        await words_for(pilot, "The fox ran to the river")
        rows = app.query_one(ExampleRows)
        assert [r.word for r in rows.words] == ["The", " fox", " ran", " to", " the", " river"]
        ex = app.state.replica.word_examples("The fox ran to the river")
        for shown, want in zip(rows.words, ex.rows, strict=True):
            assert math.isclose(shown.nll, -math.log(shown.prob), rel_tol=1e-6) and shown.nll == want.nll
        footer = text_of(app.query_one("#examples-mean"))
        assert f"loss per word {ex.loss_per_word:.3f} = loss per token {ex.loss_per_token:.3f}" in footer
        per_word = ex.n_tokens / len(ex.rows)
        assert math.isclose(ex.loss_per_word, ex.loss_per_token * per_word, rel_tol=1e-9)


@sync
async def test_a_burst_of_keys_costs_one_probe_not_one_per_key(tmp_path):
    async with ready(make_app(tmp_path, prompt=""), ghost=False) as (app, pilot):
        replica = app.state.replica
        calls = []
        analyze = replica.analyze

        def counted(text, *args):
            calls.append(text)
            return analyze(text, *args)

        replica.analyze = counted
        burst = "the fox ran to the river and the dog sat by the door " * 6
        for ch in burst:  # queued at once, as a paste or a fast typist's keys are
            app.post_message(events.Key(ch if ch != " " else "space", ch))
        await wait_for(pilot, lambda: app.query_one(PromptInput).value == burst, what="the burst")
        await settle(pilot)
        assert len(calls) <= 5, f"{len(calls)} probes for {len(burst)} keys"
        assert calls[-1] == burst  # and the screen is current


@sync
async def test_a_key_stops_the_trainer_until_its_next_words_are_on_screen(tmp_path):
    async with ready(make_app(tmp_path)) as (app, pilot):
        hold = app.client.hold
        await pilot.press("x")
        assert hold.stops == 1
        await wait_for(pilot, lambda: not hold.held, 5, "the release")
        assert app.query_one(TopKBars).words is not None and app.query_one(TopKBars).words.typed.endswith("x")
        for ch in "yz":
            await pilot.press(ch)
        await wait_for(pilot, lambda: not hold.held, 5, "the release")
        assert hold.stops == hold.releases >= 2


@sync
async def test_a_pause_works_out_the_next_words_of_the_likeliest_next_key(tmp_path):
    async with ready(make_app(tmp_path)) as (app, pilot):
        for ch in "the fo":
            await pilot.press(ch)
        replica = app.state.replica
        await wait_for(pilot, lambda: replica._ahead, 5, "next words worked out ahead")
        found = app.query_one(TopKBars).words
        key = found.words[0].text[len(found.typed)] if len(found.words[0].text) > len(found.typed) else " "
        await wait_for(
            pilot,
            lambda: (
                (app.query_one(PromptInput).value + key, app.probe_settings.top_k, app.probe_settings.temperature)
                in replica._ahead
            ),
            5,
            key,
        )
        hits = replica.ahead_hits
        await pilot.press("space" if key == " " else key)
        await wait_for(pilot, lambda: replica.ahead_hits == hits + 1, 5, "the key answered from the work done ahead")
        words = app.query_one(TopKBars).words
        assert words == next_words(
            replica.model,
            replica.tokenizer,
            app.query_one(PromptInput).value,
            k=app.probe_settings.top_k,
            temperature=app.probe_settings.temperature,
        )


@sync
async def test_a_large_model_answers_the_words_at_once_and_the_attention_after_a_pause(tmp_path, monkeypatch):
    from tui_gpt.app import prompt_probes as probes
    from tui_gpt.app.widgets.attention import AttentionMap

    monkeypatch.setattr(probes, "LARGE_PAUSE", 2.0)  # long enough that a loaded machine still answers first
    async with ready(make_app(tmp_path)) as (app, pilot):
        app.state.replica.large = True  # as for GPT-2: the top-k from the prompt's cache, the full pass after a pause
        analyses = []
        analyze = app.state.replica.analyze
        app.state.replica.analyze = lambda *a: analyses.append(a[0]) or analyze(*a)
        hold = app.client.hold
        bars = app.query_one(TopKBars)
        monkeypatch.setattr(probes, "HOLD_LIMIT", 30.0)  # only the top-k's frame may let the trainer go on
        gate = threading.Event()  # the word search waits here: a slow one, as GPT-2's is
        search = app.state.replica.next_words
        app.state.replica.next_words = lambda *a, **kw: gate.wait(10) and search(*a, **kw)
        await pilot.press("t")
        await wait_for(pilot, lambda: hold.releases, 1.5, "the trainer going on once the top-k is painted")
        # Held for the top-k only: the trainer goes on before the words, which search beside it.
        assert hold.stops == 1 and not hold.held and not (bars.words and bars.words.typed.endswith("t"))
        gate.set()
        await wait_for(pilot, lambda: bars.words and bars.words.typed.endswith("t"), 1.5, "the words, before the pause")
        assert analyses == []
        # Until the pause, the panes say on screen that they wait (what they hold is an older prompt's).
        examples = app.query_one(ExamplesPane)
        assert app.query_one(AttentionMap).border_subtitle == examples.border_subtitle == probes.WAITING
        await wait_for(pilot, lambda: analyses, 5, "the attention after the pause")
        assert analyses[-1] == app.query_one(PromptInput).value
        await wait_for(pilot, lambda: app.query_one(AttentionMap).labels, 5, "the attention map")
        await wait_for(pilot, lambda: not examples.border_subtitle, 5, "the examples, current")
        assert not app.query_one(AttentionMap).border_subtitle
