"""The prompt's probes: top-k, attention, training examples, ghost text and the greedy line.

A controller of the main screen: it asks the Lens and hands the answers down to the panes.
"""

from __future__ import annotations

import time
from functools import partial
from typing import TYPE_CHECKING, Any

from textual.timer import Timer

from tui_gpt.app.widgets.attention import AttentionMap
from tui_gpt.app.widgets.examples import ExamplesPane
from tui_gpt.app.widgets.line import InfoLine
from tui_gpt.app.widgets.topk import TopKBars
from tui_gpt.visible import visible

if TYPE_CHECKING:
    from tui_gpt.app.app import GPTApp

GHOST_DELAY = 0.12  # seconds after the last key before the ghost text is computed
TYPING_PAUSE = 1.0  # seconds without a key before background probes (the greedy line) run
GREEDY_TOKENS = 32
PASSAGES = 5  # corpus passages the examples pane cycles through


class Probes:
    def __init__(self, app: GPTApp) -> None:
        self.app = app
        self.passage = -1  # -1: examples come from the prompt
        self.last_guess: str | None = None
        self.last_analysis: tuple[list, list[str]] | None = None  # (examples, labels) shown, for export
        self.last_key = 0.0  # monotonic time of the last edit of the prompt
        self._ghost_timer: Timer | None = None
        self._queued = False  # a probe for the newest keys is waiting for the queued ones

    def typed(self) -> None:
        """A key changed the prompt. Probe once all keys already queued are in: a burst or a paste costs one probe."""
        self.last_key = time.monotonic()
        if not self._queued:
            self._queued = True
            self.app.call_later(self._typed)

    def _typed(self) -> None:
        self._queued = False
        self.refresh()

    @property
    def typing(self) -> bool:
        return time.monotonic() - self.last_key <= TYPING_PAUSE

    def refresh(self) -> None:
        """Recompute the top-k, attention and examples for the prompt, then the ghost text.

        The top-k is updated here, in the same frame as the key; the attention map and the
        examples wait until that frame is on screen, and the ghost text (several forward
        passes) runs on a thread once typing pauses.
        """
        app, lens = self.app, self.app.lens
        if lens is None:
            return
        text = app.prompt.value
        analysis = lens.analyze(text, app.top_k, app.temperature)
        pred = analysis.prediction
        topk = app.query_one(TopKBars)
        topk.guesses = pred.guesses
        self.last_guess = pred.guesses[0].text if pred.guesses else None
        topk.target = app.lab.pin.target_for(pred.ids)
        labels = [lens.tokenizer.token_texts[i] for i in pred.ids]
        n = len(pred.ids) + pred.dropped
        info = f"{n} tokens · step {lens.step}"
        if pred.dropped:
            info = (
                f"[b $warning]prompt is {n} tokens: the model sees only the last {len(pred.ids)} "
                f"(its context)[/] · step {lens.step}"
            )
        app.query_one("#prompt-info", InfoLine).text = info
        # The rest waits until the bars are on screen.
        attention = app.query_one(AttentionMap)
        app.call_after_refresh(attention.show, labels, pred.attention, lens.config.causal, pred.dropped)
        if self.passage < 0:
            app.call_after_refresh(self._show_examples, "your prompt", labels, analysis)
        else:
            app.call_after_refresh(self._show_passage)
        # Ghost text waits for a pause in typing: a fast typist never shares the CPU with it.
        if self._ghost_timer is not None:
            self._ghost_timer.stop()
        self._ghost_timer = app.set_timer(GHOST_DELAY, partial(self._update_ghost, text))

    def next_source(self) -> None:
        self.passage = self.passage + 1 if self.passage < PASSAGES - 1 else -1
        self.refresh()

    def _show_examples(self, source: str, labels: list[str], analysis: Any) -> None:
        self.last_analysis = (analysis.examples, labels)
        self.app.query_one(ExamplesPane).show(source, labels, analysis.examples, analysis.loss)

    def _show_passage(self) -> None:
        lens, passages = self.app.lens, self.app.passages()
        if lens is None or not passages:
            return
        i = self.passage % len(passages)
        analysis = lens.analyze(passages[i], 1, 1.0)
        labels = [lens.tokenizer.token_texts[t] for t in analysis.prediction.ids]
        self._show_examples(f"corpus passage {i + 1}", labels, analysis)

    # ---- ghost text: greedy continuation, off the UI thread --------------------------
    def _update_ghost(self, text: str) -> None:
        lens = self.app.lens
        if lens is not None:
            self.app.run_worker(
                partial(self._complete, lens, text), thread=True, exclusive=True, group="ghost", exit_on_error=False
            )

    def _complete(self, lens: Any, text: str) -> None:
        completion = lens.complete(text)
        self.app.call_from_thread(self._show_ghost, text, completion)

    def _show_ghost(self, text: str, completion: Any) -> None:
        prompt = self.app.prompt
        if not self.app.leaving and prompt.value == text:  # still the text it was computed for
            prompt.set_ghost(completion.text, completion.first)

    # ---- the greedy line: a sample of the prompt, so the mask experiment's nonsense shows ----
    def update_greedy(self) -> None:
        lens = self.app.lens
        if lens is not None:
            prompt, mask_off = self.app.prompt.value, self.app.lab.mask.off
            self.app.run_worker(
                partial(self._greedy, lens, prompt, mask_off),
                thread=True,
                exclusive=True,
                group="greedy",
                exit_on_error=False,
            )

    def _greedy(self, lens: Any, prompt: str, mask_off: bool) -> None:
        text = visible(lens.tokenizer.decode(lens.sample(prompt, GREEDY_TOKENS, temperature=0)))
        label = "[b $error]greedy, mask off:[/] " if mask_off else "greedy: "
        self.app.call_from_thread(self._show_greedy, label + text)

    def _show_greedy(self, text: str) -> None:
        if not self.app.leaving:
            self.app.query_one("#greedy", InfoLine).text = text
