"""The playground app: a thin shell that lays out the panes, relays trainer events and binds the keys.

It owns the shared state (`state.LiveRun`, `state.ProbeSettings`) and hands each controller its
doors (`state.Doors`), never itself; the controllers' requests come back as messages, handled here.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
from collections.abc import Callable, Iterable
from dataclasses import replace
from typing import Any

from textual import events, on
from textual.app import App, ComposeResult, SystemCommand
from textual.driver import Driver
from textual.geometry import Size
from textual.screen import Screen
from textual.widgets import Footer, Header, Input, Static

from tui_gpt.app import keymap, palette, resets
from tui_gpt.app.earlier_runs.overlays import Overlays
from tui_gpt.app.hangup import Deadline, terminal_driver
from tui_gpt.app.lab.experiments import Lab
from tui_gpt.app.messages import (
    MaskSwitched,
    Pinned,
    QuitAnyway,
    QuitDone,
    QuitSaveFailed,
    ReplicaReady,
    ResetRun,
    TrainerEvent,
    WeightsStaged,
)
from tui_gpt.app.prompt_probes import Probes
from tui_gpt.app.quitting import Quitting
from tui_gpt.app.replica_relay import ReplicaRelay
from tui_gpt.app.router import Router
from tui_gpt.app.served import HungUp, served_driver
from tui_gpt.app.state import Doors, LiveRun, ProbeSettings
from tui_gpt.app.trainer_status import TrainerStatus
from tui_gpt.app.widgets.attention import AttentionMap
from tui_gpt.app.widgets.playground import Playground
from tui_gpt.app.widgets.topk import TopKBars
from tui_gpt.app.widgets.training import TrainingPane
from tui_gpt.link.protocol import Failed, Moved, Save, Saved, Status, Step
from tui_gpt.probes.hints import run_hints
from tui_gpt.settings import RunSpec

MIN_SIZE = (60, 20)
DEFAULT_PROMPT = "The quick brown"


def make_app(spec: RunSpec, out: str, **options: Any) -> GPTApp:
    """The app for `spec`, saving to `out` (`options`: those of GPTApp); the command line and the bench open it."""
    return GPTApp(spec, out, **options)


class GPTApp(App[None]):
    """Train a GPT in a background process and probe it while it learns."""

    TITLE = "tui-gpt"
    CSS_PATH = "app.tcss"
    BINDINGS = keymap.bindings()  # the keys, the palette and the help screen all come from keymap.KEYMAP

    def __init__(
        self,
        spec: RunSpec,
        out: str,
        client_factory: Callable[[Callable[[Any], None]], Any] | None = None,
        prompt: str = DEFAULT_PROMPT,
        autosave: float = 0,
        recording: Any = None,  # recorder.Recording: where the trainer records the run
    ) -> None:
        super().__init__()
        self.state = LiveRun(spec, out)  # written here only: the controllers read it
        self.probe_settings = ProbeSettings(self.state)
        self.initial_prompt = prompt
        self.final_save: Saved | None = None  # what the quit saved, for the line printed after the app
        self.relay = ReplicaRelay(self.post_message, lambda command: self.client.send(command))
        if client_factory is None:
            from tui_gpt.link.client import TrainerClient

            self.client = TrainerClient(self.relay.from_trainer, out=out, autosave=autosave, recording=recording)
        else:
            self.client = client_factory(self.relay.from_trainer)
        doors = Doors(self, self.state, self.probe_settings, self.client)
        self.probes = Probes(doors)
        self.lab = Lab(doors, self.probes)
        self.run_status = TrainerStatus(doors)
        self.overlays = Overlays(doors)
        self.quitting = Quitting(doors, self.run_status)
        self.deadline = Deadline(self.client, self.state)  # a hang-up ends the process even if Textual is stuck
        self.router = Router()
        self.router.add(Status, self._on_status)
        self.router.add(Moved, self._on_moved)
        self.run_status.connect(self.router)
        self.lab.connect(self.router)

    # ---- what the app shows -------------------------------------------------------
    @property
    def training(self) -> TrainingPane:
        return self.query_one(TrainingPane)

    @property
    def attention(self) -> AttentionMap:
        return self.query_one(AttentionMap)

    # ---- layout ------------------------------------------------------------
    def compose(self) -> ComposeResult:
        yield Header()
        yield Playground(self.initial_prompt, id="main")
        yield Static("", id="too-small")
        yield Footer()

    def on_mount(self) -> None:
        self._check_size()
        if not self.is_headless:  # a hang-up, a kill or Ctrl+C from outside: save, restore the terminal, exit
            loop = asyncio.get_running_loop()

            # A plain handler, not the loop's: it runs even while the event loop is stuck, and arms the deadline.
            def handler(sig: int, frame: object) -> None:
                self.deadline.start(sig)
                with contextlib.suppress(RuntimeError):  # the loop has closed: the app is ending already
                    loop.call_soon_threadsafe(self._on_signal, sig)

            for sig in (signal.SIGHUP, signal.SIGTERM, signal.SIGINT):
                signal.signal(sig, handler)
        if not getattr(self.client, "started", True) or not self.client.alive:
            self.call_after_refresh(self.client.start, self.state.spec)  # after the first paint

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

    # ---- trainer events ------------------------------------------------------------
    def on_replica_ready(self, message: ReplicaReady) -> None:
        """A new run: its replica, its spec and its history go to every view."""
        if self.state.leaving:
            return
        state = self.state
        state.replica, state.ready, state.reported = message.replica, message.ready, message.ready.spec
        self._mark_mask()
        self.run_status.begin(message.ready)
        self.overlays.begin(message.ready)
        self.probes.refresh()
        self.probes.update_greedy()
        self.relay.settled()

    def on_weights_staged(self, message: WeightsStaged) -> None:
        if self.state.leaving or message.replica is not self.state.replica:
            return  # quitting, or a snapshot of a run that has since been reset
        message.replica.swap(message.model, message.step)
        self.probes.refresh()
        self.lab.pin.track()
        if not self.probes.typing:
            self.probes.update_greedy()

    def on_trainer_event(self, message: TrainerEvent) -> None:
        if not self.state.leaving:
            self.router.route(message.event)

    def _on_status(self, ev: Status) -> None:
        if ev.spec is not None:
            self.state.reported = ev.spec

    def _on_moved(self, ev: Moved) -> None:
        """A reset's new run saves beside the checkpoint it would have replaced: save there, and say so."""
        self.state.out = ev.out
        self.notify(f"{ev.kept} keeps its checkpoint; this new run saves to {ev.out}", title="New folder", markup=False)

    # ---- the controllers' requests ----------------------------------------------------
    def on_reset_run(self, message: ResetRun) -> None:
        self.reset(message.spec)

    def on_mask_switched(self, message: MaskSwitched) -> None:
        """Mark every view: the replica, the title, the training pane, the probes."""
        # The run's spec holds the flag; the trainer's next Status reports the same.
        self.state.reported = replace(self.state.spec, causal=not message.off)
        if self.state.replica is not None:
            self.state.replica.set_causal(self.state.spec.causal)
        self._mark_mask()
        self.probes.refresh()
        self.probes.update_greedy()

    def _mark_mask(self) -> None:
        """The title and the training pane say whether the run trains without the mask (its spec)."""
        off = self.probe_settings.mask_off
        labels = ["MASK OFF: the causal-mask experiment is running"] if off else []
        # and the detours' (overfitting, circuits), while one runs
        self.sub_title = " · ".join(labels + self.lab.overfit.label() + self.lab.circuits.label())
        self.training.set_mask_off(off)
        self.training.set_class(self.lab.overfit.running, "-overfit")

    def on_pinned(self, message: Pinned) -> None:
        self.probes.mark(message.prefix_ids, message.target, message.word)

    @on(Input.Changed, "#prompt")
    def _prompt_changed(self) -> None:
        self.probes.prompt_changed()

    def redraw_chart(self) -> None:
        """The chart and its hints, if the curve changed (a timer of the main screen)."""
        ready = self.state.ready
        if not self.state.leaving and self.training.redraw() and ready is not None:
            small_text = self.lab.overfit.small_text()  # the overfitting experiment's one fable, while it runs
            self.training.show_hints(run_hints(self.training.curve.history(), ready.baselines, small_text=small_text))

    # ---- actions -----------------------------------------------------------------
    def action_help(self) -> None:
        from tui_gpt.app.screens.help import HelpScreen  # Markdown is slow to import: not before first paint

        self.push_screen(HelpScreen())

    # The lab: one action per command, so that each key and palette entry names a method (keymap.py).
    def action_lab_mask(self) -> None:
        self.lab.mask.start()

    def action_lab_overfit(self) -> None:
        self.lab.overfit.start()

    def action_lab_pin(self) -> None:
        self.lab.pin.start()

    def action_lab_surprisal(self) -> None:
        self.lab.surprisal.start()

    def action_lab_tokens(self) -> None:
        self.lab.tokens.start()

    def action_lab_temperature(self) -> None:
        self.lab.temperature.start()

    def action_lab_one_step(self) -> None:
        self.lab.one_step.start()

    def action_lab_memorization(self) -> None:
        self.lab.memorization.start()

    def action_lab_compare(self) -> None:
        self.lab.compare.start()

    def action_lab_logit_lens(self) -> None:
        self.lab.logit_lens.start()

    def action_lab_circuits(self) -> None:
        self.lab.circuits.start()

    def action_lab_heads(self) -> None:
        """The heads view; the phase-change experiment opens it from code too."""
        self.lab.heads.start()

    def action_lab_set_lr(self) -> None:
        self.lab.settings.set_lr()

    def action_lab_set_eval_interval(self) -> None:
        self.lab.settings.set_eval_interval()

    def action_lab_reproduce(self) -> None:
        self.lab.export.reproduce()

    def action_lab_export(self) -> None:
        self.lab.export.export()

    def action_toggle_pause(self) -> None:
        self.run_status.toggle_pause()

    def action_step(self) -> None:
        if not self.run_status.paused:
            self.action_toggle_pause()
        self.client.send(Step(1))

    def action_save(self) -> None:
        self.client.send(Save(self.state.out))

    def action_runs(self) -> None:
        self.overlays.choose()

    def action_overlay_axis(self) -> None:
        self.overlays.next_axis()

    def action_layer(self) -> None:
        self.attention.action_layer(1)

    def action_head(self) -> None:
        self.attention.action_head(1)

    def action_attention_mode(self) -> None:
        self.attention.action_mode()

    def action_temperature(self, delta: float) -> None:
        settings = self.probe_settings
        settings.temperature = round(min(5.0, max(0.1, settings.temperature + delta)), 2)
        self.query_one(TopKBars).temperature = settings.temperature
        self.probes.refresh()

    def action_top_k(self, delta: int) -> None:
        settings = self.probe_settings
        settings.top_k = min(40, max(1, settings.top_k + delta))
        self.query_one(TopKBars).k = settings.top_k
        self.probes.refresh()

    def action_words(self) -> None:
        self.probes.flip()

    def action_examples_source(self) -> None:
        self.probes.next_source()

    def action_load_text(self) -> None:
        resets.load_text(self, self.state.spec, self.state.out)

    def action_reset_model(self) -> None:
        resets.reset_model(self, self.state.spec, self.state.out)

    def reset(self, spec: RunSpec) -> None:
        """Start the run again from `spec`; the trainer keeps the old one if the new one fails."""
        self.state.replica = None  # no replica until the new run is ready
        self.relay.forget()
        self.training.curve.set_history({})
        if self.client.alive:
            self.client.reset(spec)
        else:
            self.state.launch_spec, self.state.reported = spec, None
            self.client.start(spec)
        self.run_status.restart()

    def action_restart_trainer(self) -> None:
        self.run_status.restart_trainer(self.state.spec)

    async def action_quit(self) -> None:
        if not self.state.leaving:
            self.run_status.show("saving… (a large model takes a while)" if self.state.ready else "quitting")
            self._leave()

    def _leave(self, save: bool = True) -> None:
        self.state.leaving = True  # trainer events and timers no longer touch the screen
        self.quitting.start(save)

    def on_quit_done(self, message: QuitDone) -> None:
        self.final_save = message.saved
        self.exit()

    def on_quit_save_failed(self, message: QuitSaveFailed) -> None:
        self.state.leaving = False
        self.quitting.ask(message.failed)

    def on_quit_anyway(self, message: QuitAnyway) -> None:
        self._leave(save=False)

    def _on_signal(self, sig: int) -> None:
        if not self.is_headless:
            self.deadline.start(sig)
        self.state.signalled = sig
        self.call_later(self.action_quit)

    def on_hung_up(self, message: HungUp) -> None:
        self._on_signal(signal.SIGHUP)  # a served tab closed: the same save and exit as a terminal's hang-up

    def get_driver_class(self) -> type[Driver]:
        return terminal_driver(served_driver(super().get_driver_class()))

    def exit(self, *args: Any, **kwargs: Any) -> None:
        self.state.leaving = True
        self.probes.stop()  # no forward pass of ours outlives the app (one did, and aborted the interpreter)
        super().exit(*args, **kwargs)

    def _handle_exception(self, error: Exception) -> None:
        """An exception no handler caught ends the app (Textual's rule), but saves the run first.

        The trainer is another process: without this it is killed unsaved when the app ends. The save
        is waited for here, on the UI thread, since nothing else is left to show; `final_save` says how
        it went, for the line printed after the app (commands/launch.py).
        """
        if self._exception is None and not self.state.leaving:  # the first error, and no quit saving already
            self.state.leaving = True
            save = self.state.out if self.state.ready is not None else None
            try:
                outcome = self.client.stop(save=save, timeout=3.0)
                if isinstance(outcome, Failed):
                    self.client.stop(save=None)
                self.final_save = outcome if isinstance(outcome, Saved) else None
            except Exception:  # the save's own failure must not hide the error that caused it
                self.final_save = None
        super()._handle_exception(error)

    def get_system_commands(self, screen: Screen) -> Iterable[SystemCommand]:
        yield from super().get_system_commands(screen)
        yield from palette.commands(self, self.state.spec, self.state.out)
