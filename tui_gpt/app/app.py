"""The playground app: a thin shell that lays out the panes and relays trainer events to them."""

from __future__ import annotations

import gc
import math
import time
from collections.abc import Callable, Iterable
from dataclasses import replace
from functools import partial
from typing import Any

from textual import events, on, work
from textual.app import App, ComposeResult, SystemCommand
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.geometry import Size
from textual.screen import Screen
from textual.timer import Timer
from textual.widgets import Footer, Header, Input, Static

from tui_gpt.app.experiments import LabActions
from tui_gpt.app.messages import LensReady, TrainerEvent, WeightsStaged
from tui_gpt.app.screens.dialogs import AskScreen, ConfirmScreen, check_path
from tui_gpt.app.widgets.attention import AttentionMap
from tui_gpt.app.widgets.examples import ExamplesPane
from tui_gpt.app.widgets.line import InfoLine
from tui_gpt.app.widgets.prompt import PromptInput
from tui_gpt.app.widgets.topk import TopKBars
from tui_gpt.app.widgets.training import TrainingPane
from tui_gpt.protocol import Failed, Loading, Losses, Ready, Saved, Status, Stopped, Weights
from tui_gpt.session import RunSpec

MIN_SIZE = (60, 20)
SIZES = {"tiny": (2, 2, 64), "small": (4, 4, 128), "medium": (6, 6, 192)}
DEFAULT_PROMPT = "The quick brown"
GHOST_DELAY = 0.12  # seconds after the last key before the ghost text is computed
TYPING_PAUSE = 1.0  # seconds without a key before background probes (the greedy line) run


class GPTApp(LabActions, App[None]):
    """Train a GPT in a background process and probe it while it learns."""

    TITLE = "tui-gpt"
    CSS_PATH = "app.tcss"
    BINDINGS = [
        Binding("f1", "help", "Help"),
        Binding("ctrl+r", "toggle_pause", "Pause/Resume"),
        Binding("ctrl+n", "step", "Step"),
        Binding("ctrl+s", "save", "Save"),
        Binding("ctrl+l", "layer", "Layer"),
        Binding("ctrl+g", "head", "Head"),
        Binding("up", "temperature(0.1)", "Temp+", show=False),
        Binding("down", "temperature(-0.1)", "Temp-", show=False),
        Binding("ctrl+up", "top_k(1)", "k+", show=False),
        Binding("ctrl+down", "top_k(-1)", "k-", show=False),
        Binding("ctrl+t", "examples_source", "Examples", show=False),
        Binding("ctrl+o", "load_text", "Load text", show=False),
        Binding("f2", "mask_experiment", "Mask on/off", show=False),
        Binding("f3", "pin", "Pin", show=False),
        Binding("f4", "surprisal", "Surprisal", show=False),
        Binding("f5", "tokens", "Tokens", show=False),
        Binding("f6", "temperature_view", "Temperature", show=False),
        Binding("f7", "one_step", "One step", show=False),
        Binding("f8", "memorization", "Memorization", show=False),
        Binding("f9", "compare", "Compare", show=False),
        Binding("ctrl+q", "quit", "Quit"),
    ]

    def __init__(
        self,
        spec: RunSpec,
        out: str,
        client_factory: Callable[[Callable[[Any], None]], Any] | None = None,
        prompt: str = DEFAULT_PROMPT,
    ) -> None:
        super().__init__()
        self.spec = replace(spec, train=dict(spec.train))  # ours to change: lr, eval interval, mask
        self.out = out
        self.initial_prompt = prompt
        self.lens = None
        self.ready: Ready | None = None
        self.saves_on_quit = False
        self.step = 0
        self.paused = False
        self.status = "starting"
        self.last_event: dict | None = None
        self.error: str | None = None
        self.saved: Saved | None = None
        self.temperature = 1.0
        self.top_k = 10
        self.passage = -1  # -1: examples come from the prompt
        self._staging = None  # the lens that reader-thread snapshots load into
        self.last_sample: str | None = None  # the last generated sample, for surprisal colouring
        self.last_analysis: tuple[list, list[str]] | None = None  # (examples, labels) shown, for export
        self._last_guess: str | None = None
        self._frozen = False
        self.leaving = False  # quitting: trainer events and timers no longer touch the screen
        self._ghost_timer: Timer | None = None
        self.last_key = 0.0  # monotonic time of the last edit of the prompt
        self.started = time.monotonic()
        if client_factory is None:
            from tui_gpt.client import TrainerClient

            self.client = TrainerClient(self._from_trainer)
        else:
            self.client = client_factory(self._from_trainer)

    # ---- layout ------------------------------------------------------------
    def compose(self) -> ComposeResult:
        yield Header()
        with Horizontal(id="main"):
            with Vertical(id="left"):
                with Vertical(id="prompt-pane"):
                    yield PromptInput(
                        value=self.initial_prompt, placeholder="type a prefix…", select_on_focus=False, id="prompt"
                    )
                    yield InfoLine(id="prompt-info")
                    yield InfoLine(id="greedy")
                yield TopKBars(id="topk")
                yield ExamplesPane(id="examples")
            with Vertical(id="right"):
                yield TrainingPane(id="training")
                yield AttentionMap(id="attention")
        yield Static("", id="too-small")
        yield Footer()

    def on_mount(self) -> None:
        self.query_one("#prompt-pane").border_title = "Prompt"
        self.query_one("#training").border_title = "Training"
        self.query_one("#examples").border_title = "Training examples"
        self.query_one(PromptInput).focus()
        self._check_size()
        if not getattr(self.client, "started", True) or not self.client.alive:
            self.call_after_refresh(self.client.start, self.spec)  # after the first paint
        # Owned by the pane, so the timers stop when the screen goes away on exit.
        pane = self.query_one(TrainingPane)
        pane.set_interval(1 / 2, self._redraw_chart)
        pane.set_interval(1.0, self._refresh_stats)

    def on_resize(self, event: events.Resize) -> None:
        self._check_size(event.size)

    def _check_size(self, size: Size | None = None) -> None:
        w, h = size or self.size
        small = w < MIN_SIZE[0] or h < MIN_SIZE[1]
        self.screen.set_class(small, "-too-small")
        if small:
            self.query_one("#too-small", Static).update(
                f"Terminal too small: {w}x{h}. tui-gpt needs at least {MIN_SIZE[0]}x{MIN_SIZE[1]}; "
                "enlarge the window (training continues)."
            )

    # ---- trainer events (reader thread) -------------------------------------
    def _from_trainer(self, ev: Any) -> None:
        """Called on the client's reader thread: heavy work here, then a message to the UI."""
        if isinstance(ev, Ready):
            from tui_gpt.lens import Lens, ui_threads

            ui_threads()
            lens = Lens(ev.tokenizer_json, ev.model_config)
            self._staging = lens
            self.post_message(LensReady(ev, lens))
        elif isinstance(ev, Weights):
            lens = self._staging
            if lens is not None:
                self.post_message(WeightsStaged(lens, lens.stage(ev.blob), ev.step))
        else:
            self.post_message(TrainerEvent(ev))

    def on_lens_ready(self, message: LensReady) -> None:
        if self.leaving:
            return
        self.lens = message.lens
        self.ready = ready = message.ready
        self.step = ready.step
        self.error = None
        self.status = "training" if not self.paused else "paused"
        pane = self.query_one(TrainingPane)
        pane.curve.set_history(ready.history)
        pane.set_baselines(ready.baselines)
        c = ready.corpus
        pane.set_corpus(
            f"[b]{c['name']}[/b]: {c['files']} files · {c['chars']:,} chars · "
            f"{c['train_tokens']:,}+{c['val_tokens']:,} tokens (train+val) · {c['tokenizer']} vocab "
            f"{c['vocab_size']:,} · {c['params'] / 1e6:.2f} M params · {ready.device} {ready.dtype}"
        )
        if self.paused:
            self.client.send("pause")
        self._refresh_stats()
        self.refresh_probes()
        self._update_greedy()
        if not self._frozen:
            # Start-up's long-lived objects out of the collector's way: fewer latency spikes.
            gc.collect()
            gc.freeze()
            self._frozen = True

    def on_weights_staged(self, message: WeightsStaged) -> None:
        if self.leaving:
            return
        if message.lens is not self.lens:
            return  # a snapshot of a run that has since been reset
        self.lens.swap(message.model, message.step)
        self.refresh_probes()
        self._track_pinned()
        if time.monotonic() - self.last_key > TYPING_PAUSE:  # not while the person types
            self._update_greedy()

    def on_trainer_event(self, message: TrainerEvent) -> None:
        if self.leaving:
            return
        ev = message.event
        if self.lab_event(ev):
            return
        if isinstance(ev, Losses):
            self.query_one(TrainingPane).curve.add(ev.events)
            if ev.events:
                self.last_event = ev.events[-1]
                self.step = self.last_event["step"]
        elif isinstance(ev, Status):
            self.paused, self.step = ev.paused, ev.step
            self.status = "paused" if ev.paused else "training"
            self._refresh_stats()
        elif isinstance(ev, Loading):
            self.status = f"{ev.what} {ev.done}/{ev.total}" if ev.total > 1 else ev.what
            self._refresh_stats()
        elif isinstance(ev, Saved):
            self.saved = ev
            self.notify(f"saved step {ev.step} to {ev.path}", title="Checkpoint")
        elif isinstance(ev, Failed):
            self.error = ev.message
            if ev.fatal:
                self.status = "stopped"
                self.notify(
                    f"{ev.message}\nThe app keeps working. Restart the trainer from the command palette.",
                    title="Trainer error",
                    severity="error",
                    timeout=15,
                )
            else:
                self.notify(ev.message, title="Trainer", severity="warning", timeout=8)
            self._refresh_stats()
        elif isinstance(ev, Stopped):
            self.status = "stopped"

    # ---- probing -------------------------------------------------------------
    @on(Input.Changed, "#prompt")
    def _prompt_changed(self) -> None:
        self.last_key = time.monotonic()
        self.refresh_probes()

    def refresh_probes(self) -> None:
        """Recompute the top-k, attention and examples for the prompt, then the ghost text.

        The top-k is updated here, in the same frame as the key; the attention map and the
        examples wait until that frame is on screen, and the ghost text (several forward passes) runs on a thread once
        typing pauses.
        """
        if self.lens is None:
            return
        prompt = self.query_one(PromptInput)
        text = prompt.value
        lens = self.lens
        analysis = lens.analyze(text, self.top_k, self.temperature)
        pred = analysis.prediction
        topk = self.query_one(TopKBars)
        topk.guesses = pred.guesses
        self._last_guess = pred.guesses[0].text if pred.guesses else None
        topk.target = self.pinned["target"] if self.pinned and self.pinned["ids"] == pred.ids else None
        labels = [lens.tokenizer.token_texts[i] for i in pred.ids]
        n = len(pred.ids) + pred.dropped
        info = f"{n} tokens · step {lens.step}"
        if pred.dropped:
            info = (
                f"[b $warning]prompt is {n} tokens: the model sees only the last {len(pred.ids)} "
                f"(its context)[/] · step {lens.step}"
            )
        self.query_one("#prompt-info", InfoLine).text = info
        # The rest waits until the bars are on screen.
        attention = self.query_one(AttentionMap)
        self.call_after_refresh(attention.show, labels, pred.attention, lens.config.causal, pred.dropped)
        if self.passage < 0:
            self.call_after_refresh(self._show_examples, "your prompt", labels, analysis)
        else:
            self.call_after_refresh(self._show_passage)
        # Ghost text waits for a pause in typing: a fast typist never shares the CPU with it.
        if self._ghost_timer is not None:
            self._ghost_timer.stop()
        self._ghost_timer = self.set_timer(GHOST_DELAY, partial(self._update_ghost, text))

    def _show_examples(self, source: str, labels: list[str], analysis: Any) -> None:
        self.last_analysis = (analysis.examples, labels)
        self.query_one(ExamplesPane).show(source, labels, analysis.examples, analysis.loss)

    def _show_passage(self) -> None:
        if self.lens is None or self.ready is None:
            return
        passages = self.ready.corpus.get("passages") or []
        if not passages:
            return
        text = passages[self.passage % len(passages)]
        analysis = self.lens.analyze(text, 1, 1.0)
        labels = [self.lens.tokenizer.token_texts[i] for i in analysis.prediction.ids]
        self._show_examples(f"corpus passage {self.passage % len(passages) + 1}", labels, analysis)

    def _update_ghost(self, text: str) -> None:
        if self.lens is not None:
            self._complete(self.lens, text)

    @work(thread=True, exclusive=True, group="ghost", exit_on_error=False)
    def _complete(self, lens: Any, text: str) -> None:
        """Greedy ghost text: several forward passes, so off the UI thread."""
        completion = lens.complete(text)
        self.call_from_thread(self._show_ghost, text, completion)

    def _show_ghost(self, text: str, completion: Any) -> None:
        if self.leaving:
            return
        prompt = self.query_one(PromptInput)
        if prompt.value == text:  # still the text it was computed for
            prompt.set_ghost(completion.text, completion.first)

    # ---- stats and chart --------------------------------------------------------
    def _redraw_chart(self) -> None:
        if self.leaving:
            return
        if self.query_one(TrainingPane).redraw():
            self._update_hints()

    def _refresh_stats(self) -> None:
        """Two lines: where the run is, then how fast it goes."""
        if self.leaving:
            return
        ev = self.last_event
        curve = self.query_one(TrainingPane).curve
        first = [f"[b]{self.status}[/b]", f"step [b]{self.step:,}[/b]"]
        second = []
        if ev:
            first.append(f"train {ev['loss']:.3f}")
            second += [f"{ev['tokens_per_s']:,.0f} tok/s", f"lr {ev['lr']:.2e}", f"{_clock(ev['elapsed'])} elapsed"]
        if curve.eval_val:
            at = curve.eval_steps[-1]
            first.append(f"val {curve.eval_val[-1]:.3f}" + (f" (at step {at:,})" if at != self.step else ""))
        text = " · ".join(first) + "\n" + " · ".join(second)
        if self.error:
            text = " · ".join(first) + f"\n[b $error]error:[/] {self.error}"
        self.query_one(TrainingPane).set_stats(text)

    # ---- actions -----------------------------------------------------------------
    def action_help(self) -> None:
        from tui_gpt.app.screens.help import HelpScreen  # Markdown is slow to import: not before first paint

        self.push_screen(HelpScreen())

    def action_toggle_pause(self) -> None:
        self.paused = not self.paused
        self.client.send("pause" if self.paused else "resume")
        self.status = "paused" if self.paused else "training"
        self._refresh_stats()

    def action_step(self) -> None:
        if not self.paused:
            self.action_toggle_pause()
        self.client.send("step", n=1)

    def action_save(self) -> None:
        self.client.send("save", path=self.out)

    def action_layer(self) -> None:
        self.query_one(AttentionMap).action_layer(1)

    def action_head(self) -> None:
        self.query_one(AttentionMap).action_head(1)

    def action_temperature(self, delta: float) -> None:
        self.temperature = round(min(5.0, max(0.1, self.temperature + delta)), 2)
        self.query_one(TopKBars).temperature = self.temperature
        self.refresh_probes()

    def action_top_k(self, delta: int) -> None:
        self.top_k = min(40, max(1, self.top_k + delta))
        self.query_one(TopKBars).k = self.top_k
        self.refresh_probes()

    def action_examples_source(self) -> None:
        self.passage = self.passage + 1 if self.passage < 4 else -1
        self.refresh_probes()

    def action_load_text(self) -> None:
        def chosen(path: str | None) -> None:
            if path:
                self._confirm_reset(replace(self.spec, sources=[path], resume=None), f"Train from scratch on {path}?")

        self.push_screen(
            AskScreen("Train on which text? A file, a folder, or fables / python-docs", "", check_path), chosen
        )

    def _confirm_reset(self, spec: RunSpec, question: str) -> None:
        def answer(yes: bool | None) -> None:
            if yes:
                self.reset(spec)

        self.push_screen(ConfirmScreen(f"{question}\nThis resets the model and its training."), answer)

    def reset(self, spec: RunSpec) -> None:
        """Start the run again from `spec`; the trainer keeps the old one if the new one fails."""
        self.spec = replace(spec, train=dict(spec.train))  # ours to change: lr, eval interval, mask
        self.lens = self._staging = None
        self.last_event = None
        self.step = 0
        self.query_one(TrainingPane).curve.set_history({})
        self.status = "restarting"
        if self.client.alive:
            self.client.reset(spec)
        else:
            self.client.start(spec)
        self._refresh_stats()

    def action_restart_trainer(self) -> None:
        self.error = None
        self.client.start(self.spec)
        self.status = "restarting"
        self._refresh_stats()

    async def action_quit(self) -> None:
        self.status = "saving and quitting"
        self._refresh_stats()
        self.leaving = True
        self._stop_trainer()

    def exit(self, *args: Any, **kwargs: Any) -> None:
        self.leaving = True
        super().exit(*args, **kwargs)

    @work(thread=True, exit_on_error=False, group="trainer", exclusive=True)
    def _stop_trainer(self) -> None:
        """Save a checkpoint and end the trainer process, off the UI thread, then exit."""
        # Before the run is built nothing is trained: end the trainer at once, without a save.
        self.saves_on_quit = self.ready is not None
        if self.saves_on_quit:
            self.client.stop(save=self.out)
        else:
            self.client.stop(save=None, timeout=0)
        self.call_from_thread(self.exit)

    def get_system_commands(self, screen: Screen) -> Iterable[SystemCommand]:
        yield from super().get_system_commands(screen)
        yield SystemCommand(
            "Pause or resume training", "Stop or continue the trainer (ctrl+r)", self.action_toggle_pause
        )
        yield SystemCommand("Single training step", "Pause and take one optimizer step (ctrl+n)", self.action_step)
        yield SystemCommand("Save checkpoint", f"Write a checkpoint to {self.out} (ctrl+s)", self.action_save)
        yield SystemCommand(
            "Load text…", "Train from scratch on another file or folder (ctrl+o)", self.action_load_text
        )
        yield SystemCommand("Reset model", "Start training again from random weights", self._reset_model)
        for kind in ("char", "bpe", "word"):
            yield SystemCommand(
                f"Tokenizer: {kind}", f"Retrain with the {kind} tokenizer (resets the model)", self._tokenizer_cb(kind)
            )
        for name, (n_layer, n_head, n_embd) in SIZES.items():
            yield SystemCommand(
                f"Model size: {name}",
                f"{n_layer} layers, {n_head} heads, width {n_embd} (resets the model)",
                self._size_cb(name),
            )
        yield SystemCommand(
            "Temperature up", "Sharper → flatter next-token probabilities (↑)", lambda: self.action_temperature(0.1)
        )
        yield SystemCommand("Temperature down", "(↓)", lambda: self.action_temperature(-0.1))
        yield SystemCommand("Top-k up", "Show one more next-token guess (ctrl+↑)", lambda: self.action_top_k(1))
        yield SystemCommand("Top-k down", "Show one fewer guess (ctrl+↓)", lambda: self.action_top_k(-1))
        yield SystemCommand("Attention: next layer", "(ctrl+l)", self.action_layer)
        yield SystemCommand("Attention: next head", "(ctrl+g)", self.action_head)
        yield SystemCommand("Attention: cycle view", "One head, all heads, the causal mask", self._attention_mode)
        yield SystemCommand("Examples: prompt or corpus passage", "(ctrl+t)", self.action_examples_source)
        yield SystemCommand("Restart trainer", "Start the trainer process again", self.action_restart_trainer)
        lab = [
            (
                "Lab: mask experiment on/off",
                "Train without the causal mask, and back (f2)",
                self.action_mask_experiment,
            ),
            ("Lab: pin an example", "Track p(target | prefix) over training (f3)", self.action_pin),
            ("Lab: surprisal colouring", "Colour each token by the rank the model gave it (f4)", self.action_surprisal),
            ("Lab: tokenizer view", "The exact ids, and lengths under char, bpe and word (f5)", self.action_tokens),
            ("Lab: temperature view", "Logits, logits / T, softmax side by side (f6)", self.action_temperature_view),
            ("Lab: one step on one example", "One optimizer step on prompt -> last token (f7)", self.action_one_step),
            (
                "Lab: memorization check",
                "Sample, and mark spans copied from the training text (f8)",
                self.action_memorization,
            ),
            ("Lab: compare checkpoints", "Another checkpoint side by side with this run (f9)", self.action_compare),
            ("Set learning rate…", "Applies at once, no reset", self.action_set_lr),
            ("Set evaluation interval…", "Applies at once, no reset", self.action_set_eval_interval),
            ("Show the command that reproduces this run", "And copy it to the clipboard", self.action_reproduce),
            (
                "Export loss history, examples (CSV) and screen (SVG)",
                "Next to the checkpoint folder",
                self.action_export,
            ),
        ]
        for title, help_text, callback in lab:
            yield SystemCommand(title, help_text, callback)
        yield SystemCommand("Help: how a GPT learns", "The three ideas and where to see them (f1)", self.action_help)

    def _attention_mode(self) -> None:
        self.query_one(AttentionMap).action_mode()

    def _reset_model(self) -> None:
        self._confirm_reset(replace(self.spec, resume=None), "Reset the model to random weights?")

    def _tokenizer_cb(self, kind: str) -> Callable[[], None]:
        return lambda: self._confirm_reset(
            replace(self.spec, tokenizer=kind, resume=None), f"Switch to the {kind} tokenizer?"
        )

    def _size_cb(self, name: str) -> Callable[[], None]:
        n_layer, n_head, n_embd = SIZES[name]
        spec = replace(self.spec, n_layer=n_layer, n_head=n_head, n_embd=n_embd, resume=None)
        return lambda: self._confirm_reset(spec, f"Switch to the {name} model?")


def _clock(seconds: float) -> str:
    if not math.isfinite(seconds):
        return "-"
    m, s = divmod(int(seconds), 60)
    h, m = divmod(m, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m}:{s:02d}"
