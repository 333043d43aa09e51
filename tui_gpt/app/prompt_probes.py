"""The prompt's probes: next words and tokens, attention, training examples, ghost text, the greedy line.

A controller of the main screen: it asks the Replica and hands the answers down to the panes. The next-token
probe is one forward pass, done in the key's own frame; the next-word search takes several, so it runs on
a thread after that frame, and the next key or weight update cancels it. From a key until its answer is on
screen, the trainer process is stopped (`preempt`): the person's key gets every core.
"""

from __future__ import annotations

import contextlib
import os
import threading
import time
from functools import partial
from typing import TYPE_CHECKING

from textual.content import Content
from textual.timer import Timer

from tui_gpt.app.widgets.attention import AttentionMap
from tui_gpt.app.widgets.examples_pane import ExamplesPane
from tui_gpt.app.widgets.line import InfoLine
from tui_gpt.app.widgets.prompt import PromptInput
from tui_gpt.app.widgets.topk import TopKBars
from tui_gpt.link.protocol import SetThreads
from tui_gpt.settings import cores
from tui_gpt.visible import visible

if TYPE_CHECKING:
    from tui_gpt.app.state import Doors
    from tui_gpt.probes.nextword import NextWords, WordExamples
    from tui_gpt.probes.predict import Analysis
    from tui_gpt.probes.replica import Replica

LARGE_PAUSE = 0.3  # seconds without a key before a large model's attention and examples are computed
TYPING_PAUSE = 1.0  # seconds without a key before background probes (the greedy line) run
HOLD_LIMIT = 1.0  # seconds a key may keep the trainer stopped, whatever becomes of its answer
AHEAD_NICE = 10  # the priority of working ahead: below the trainer's and the UI's
AHEAD_THREAD = "tui-gpt-ahead"  # its thread's name
WAITING = "waiting for a pause in typing"  # a large model's attention and examples, under their panes
GREEDY_TOKENS = 32
PASSAGES = 5  # corpus passages the examples pane cycles through


class Probes:
    def __init__(self, doors: Doors) -> None:
        self.ui = doors.ui  # Textual's services: queries, timers, workers
        self.run, self.settings, self.client = doors.run, doors.settings, doors.client
        self.passage = -1  # -1: examples come from the prompt
        self.last_guess: str | None = None
        self.last_analysis: tuple[list, list[str]] | None = None  # (examples, labels) shown, for export
        self.last_key = 0.0  # monotonic time of the last edit of the prompt
        self.by_word = True  # the panes show words (else tokens)
        self.generation = 0  # bumped by every probe: a word search of an older one gives up
        self.ahead: threading.Thread | None = None  # the think-ahead thread, joined when the app ends (stop)
        self._queued = False  # a probe for the newest keys is waiting for the queued ones
        self._pause: Timer | None = None  # a large model's heavy probes, waiting for a pause in typing
        self._hold_limit: Timer | None = None  # continues the trainer if a key's answer never comes
        self._typing_hint = False  # the trainer was told to leave a core to the person's keys
        self._greedy_due = False  # a key cancelled the greedy line: it runs again when the typing pauses
        self.marked: tuple[list[int], int, str] | None = None  # (prefix ids, target, word) the top-k marks

    @property
    def prompt(self) -> PromptInput:
        return self.ui.query_one(PromptInput)

    def mark(self, prefix_ids: list[int], target: int, word: str) -> None:
        """Mark `target` (and `word`) in the top-k whenever it shows the prefix `prefix_ids`: the pinned example."""
        self.marked = (prefix_ids, target, word)
        self.refresh()

    def prompt_changed(self) -> None:
        """A key changed the prompt. Probe once all keys already queued are in: a burst or a paste costs one probe."""
        self.last_key = time.monotonic()
        if self.run.replica is not None:
            self._hold()
            if not self._typing_hint:
                # While keys come, the trainer also leaves the UI a core between holds: at every core,
                # its threads and the UI's fought over both (bench --ui: training while typing).
                self._typing_hint = True
                self.client.send(SetThreads(max(1, cores() - 1)))
                self.ui.set_timer(TYPING_PAUSE, self._idle)
        if not self._queued:
            self._queued = True
            self.ui.call_later(self._probe_queued)

    def _hold(self) -> None:
        """Stop the trainer until this key's answer is on screen (or HOLD_LIMIT has passed)."""
        self.client.hold.stop()
        if self._hold_limit is not None:
            self._hold_limit.stop()
        self._hold_limit = self.ui.set_timer(HOLD_LIMIT, self._release)

    def _release(self) -> None:
        self.client.hold.release()

    def _idle(self) -> None:
        if self.typing:
            self.ui.set_timer(TYPING_PAUSE, self._idle)
            return
        self._typing_hint = False
        self.client.send(SetThreads(cores()))  # nobody types: every core trains
        if self._greedy_due:
            self._greedy_due = False
            self.update_greedy()

    def _probe_queued(self) -> None:
        self._queued = False
        self.refresh()

    @property
    def typing(self) -> bool:
        return time.monotonic() - self.last_key <= TYPING_PAUSE

    def refresh(self) -> None:
        """Recompute the top-k, attention and examples for the prompt, then the next words and ghost text.

        The top-k is updated here, in the same frame as the key; the attention map and the examples
        wait until that frame is on screen; the word search runs on a thread. A large model (GPT-2)
        answers the top-k from the prompt's cached keys and values, and computes the attention and
        the examples on a thread too: a whole forward pass of it would hold up the next key.
        """
        app, replica = self.ui, self.run.replica
        if replica is None:
            return
        text, k, temperature = self.prompt.value, self.settings.top_k, self.settings.temperature
        self.generation += 1
        if replica.large:
            # One token's pass while the trainer is held, then the word search: side by side, the
            # search would take the core the top-k needs.
            pred = replica.next_tokens(text, k, temperature, self.key_threads(replica))
            # Then the trainer goes on, once the top-k is on screen, and the words search beside it on
            # the core it leaves: held through GPT-2's search, it trained a sixth of the time (bench --ui).
            app.call_after_refresh(self._release)
            self._find_words(replica, text, self.generation, k, temperature)
            # Attention and examples are many times the work, and a forward pass cannot be cancelled:
            # they wait for a pause in typing, or they would hold up the next key.
            if self._pause is not None:
                self._pause.stop()
            self._waiting(WAITING)  # what they show belongs to an older prompt: say so
            self._pause = app.set_timer(LARGE_PAUSE, partial(self._after_pause, replica, text, self.generation))
        else:
            # The word search starts first, on a thread beside this frame's work: while a key holds
            # the trainer, both cores are the app's.
            self._find_words(replica, text, self.generation, k, temperature)
            analysis = replica.analyze(text, k, temperature)
            pred = analysis.prediction
            app.call_after_refresh(self._show_analysis, text, analysis, self.generation)
        topk = app.query_one(TopKBars)
        topk.guesses = pred.guesses
        self.last_guess = pred.guesses[0].text if pred.guesses else None
        marked = self.marked
        topk.target, topk.target_word = marked[1:] if marked and marked[0] == pred.ids else (None, None)
        n = len(pred.ids) + pred.dropped
        info = f"{n} tokens · step {replica.step}"
        if pred.dropped:
            info = (
                f"[b $warning]prompt is {n} tokens: the model sees only the last {len(pred.ids)} "
                f"(its context)[/] · step {replica.step}"
            )
        app.query_one("#prompt-info", InfoLine).text = info

    def _after_pause(self, replica: Replica, text: str, generation: int) -> None:
        app = self.ui
        if generation != self.generation:
            return
        work = partial(self._analyze, replica, text, generation, self.settings.top_k, self.settings.temperature)
        app.run_worker(work, thread=True, exclusive=True, group="analysis", exit_on_error=False)

    def _analyze(self, replica: Replica, text: str, generation: int, k: int, temperature: float) -> None:
        analysis = replica.analyze(text, k, temperature)
        words = replica.word_examples(text) if self.by_word else None
        self.ui.call_from_thread(self._show_analysis, text, analysis, generation, words)

    def _show_analysis(self, text: str, analysis: Analysis, generation: int, words: WordExamples | None = None) -> None:
        """The attention map and the examples of one probe, unless a newer one has begun."""
        app, replica = self.ui, self.run.replica
        if replica is None or self.run.leaving or generation != self.generation:
            return
        pred = analysis.prediction
        labels = [replica.tokenizer.token_texts[i] for i in pred.ids]
        self._waiting("")
        app.query_one(AttentionMap).show(labels, pred.attention, replica.config.causal, pred.dropped)
        if self.passage < 0:
            self._show_examples("your prompt", labels, analysis, text, words)
        else:
            self._show_passage()

    def _waiting(self, note: str) -> None:
        """Say under the attention and examples panes that they wait for a pause ("": they are current)."""
        for pane in (self.ui.query_one(AttentionMap), self.ui.query_one(ExamplesPane)):
            pane.border_subtitle = note

    def flip(self) -> None:
        """Words <-> tokens, in the top-k and the examples."""
        self.by_word = not self.by_word
        self.ui.query_one(TopKBars).by_word = self.by_word
        self.refresh()

    def next_source(self) -> None:
        self.passage = self.passage + 1 if self.passage < PASSAGES - 1 else -1
        self.refresh()

    def _show_examples(
        self, source: str, labels: list[str], analysis: Analysis, text: str, words: WordExamples | None = None
    ) -> None:
        self.last_analysis = (analysis.examples, labels)
        replica = self.run.replica
        if words is None and self.by_word and replica is not None:
            words = replica.word_examples(text)
        self.ui.query_one(ExamplesPane).show(source, labels, analysis.examples, analysis.loss, words)

    def _show_passage(self) -> None:
        replica, passages = self.run.replica, self.run.passages()
        if replica is None or not passages:
            return
        i = self.passage % len(passages)
        analysis = replica.analyze(passages[i], 1, 1.0)
        labels = [replica.tokenizer.token_texts[t] for t in analysis.prediction.ids]
        self._show_examples(f"corpus passage {i + 1}", labels, analysis, passages[i])

    # ---- next words and the ghost text: a search of several forward passes, off the UI thread ----
    def _find_words(self, replica: Replica, text: str, generation: int, k: int, temperature: float) -> None:
        if replica is not self.run.replica or generation != self.generation:
            return  # a newer key or weight update is on its way, or a reset has dropped this replica
        work = partial(self._words, replica, text, generation, k, temperature)
        self.ui.run_worker(work, thread=True, exclusive=True, group="words", exit_on_error=False)

    @staticmethod
    def key_threads(replica: Replica) -> int | None:
        """Torch threads for a large model's key: one. Measured in the app (GPT-2 small, 2 cores): the
        top-k on 2 threads while the trainer was held took p50 597 ms against 93 ms on one, beside the
        UI's and the searches' threads. A small model's count stays as it is (None)."""
        return 1 if replica.large else None

    def _words(self, replica: Replica, text: str, generation: int, k: int, temperature: float) -> None:
        def stale() -> bool:
            return generation != self.generation

        threads = self.key_threads(replica)
        found = replica.next_words(text, k, temperature, stale, threads=threads)
        if found is None:
            return
        # The ghost completes the word being typed; once it is whole, it is the likeliest next word,
        # which takes another search: the words go on screen first, the ghost follows.
        ghost = found.words[0].text[len(found.typed) :] if found.words else ""
        whole = not ghost and bool(found.typed.strip())
        self.ui.call_from_thread(self._show_words, text, generation, found, *self._ghost(replica, ghost))
        if whole:
            after = replica.next_words(text, 1, 1.0, stale, after_word=True, threads=threads)
            if after is not None and after.words:
                self.ui.call_from_thread(self._show_ghost, text, generation, *self._ghost(replica, after.words[0].text))

    @staticmethod
    def _ghost(replica: Replica, ghost: str) -> tuple[str, str]:
        """The ghost text, and its first token: what Tab accepts."""
        ids = replica.tokenizer.encode(ghost) if ghost else []
        return ghost, replica.tokenizer.token_texts[ids[0]] if ids else ghost

    def _show_ghost(self, text: str, generation: int, ghost: str, first: str) -> None:
        if not self.run.leaving and generation == self.generation and self.prompt.value == text:
            self.prompt.set_ghost(ghost, first)

    def _show_words(self, text: str, generation: int, found: NextWords, ghost: str, first: str) -> None:
        if self.run.leaving or generation != self.generation:
            return  # the pane keeps the last complete answer until the newest one arrives
        self.ui.query_one(TopKBars).words = found
        self._show_ghost(text, generation, ghost, first)
        self.ui.call_after_refresh(self._release)  # the answer is on screen: the trainer goes on
        if self.typing:
            self._think_ahead(text, generation, found)

    def _think_ahead(self, text: str, generation: int, found: NextWords) -> None:
        """While the person pauses, work out the next words after their likeliest next keys (Replica.think_ahead).

        On a thread of its own at a low priority: it takes what the trainer and the UI leave.
        """
        replica, settings = self.run.replica, self.settings
        if replica is None:
            return

        def work() -> None:
            with contextlib.suppress(AttributeError, OSError):  # per-thread priority: Linux only
                os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), AHEAD_NICE)
            stale = lambda: generation != self.generation  # noqa: E731
            replica.think_ahead(found, text, settings.top_k, settings.temperature, stale)

        # Not a daemon: one inside a forward pass while the interpreter ends aborts it (torch's threads).
        self.ahead = threading.Thread(target=work, name=AHEAD_THREAD)
        self.ahead.start()

    def stop(self, timeout: float = 30.0) -> None:
        """The app ends: every search in flight gives up after its current forward pass; wait for think-ahead's."""
        self.generation += 1
        ahead, self.ahead = self.ahead, None
        if ahead is not None and ahead is not threading.current_thread():
            ahead.join(timeout)

    # ---- the greedy line: a sample of the prompt, so the mask experiment's nonsense shows ----
    def update_greedy(self) -> None:
        replica = self.run.replica
        if replica is not None:
            prompt, mask_off = self.prompt.value, self.settings.mask_off
            self.ui.run_worker(
                partial(self._greedy, replica, prompt, mask_off),
                thread=True,
                exclusive=True,
                group="greedy",
                exit_on_error=False,
            )

    def _greedy(self, replica: Replica, prompt: str, mask_off: bool) -> None:
        # A key gives it up between two blocks: GPT-2's 32 tokens are seconds of a core the key needs.
        began = self.last_key
        ids = replica.sample(prompt, GREEDY_TOKENS, temperature=0, cancelled=lambda: self.last_key != began)
        if ids is None:
            self._greedy_due = True  # done again once the typing pauses
            return
        text = visible(replica.tokenizer.decode(ids))
        label = "[b $error]greedy, mask off:[/] " if mask_off else "greedy: "
        # The model writes whatever its text held ("[/]" in the Python docs): a $variable, never markup.
        self.ui.call_from_thread(self._show_greedy, Content.from_markup(label + "$sample", sample=text))

    def _show_greedy(self, text: Content) -> None:
        if not self.run.leaving:
            self.ui.query_one("#greedy", InfoLine).text = text
