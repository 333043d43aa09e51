"""The playground app: a thin shell that lays out the panes, relays trainer events and binds the keys."""

from __future__ import annotations

import asyncio
import signal
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

from textual import events, on
from textual.app import App, ComposeResult, SystemCommand
from textual.driver import Driver
from textual.geometry import Size
from textual.screen import Screen
from textual.widgets import Footer, Header, Input, Static

from tui_gpt.app import keymap, palette, resets
from tui_gpt.app.lab.experiments import Lab
from tui_gpt.app.lens_relay import LensRelay
from tui_gpt.app.messages import LensReady, TrainerEvent, WeightsStaged
from tui_gpt.app.probes import Probes
from tui_gpt.app.quitting import Quitting
from tui_gpt.app.router import Router
from tui_gpt.app.run_status import RunStatus
from tui_gpt.app.served import HungUp, served_driver
from tui_gpt.app.widgets.attention import AttentionMap
from tui_gpt.app.widgets.playground import Playground
from tui_gpt.app.widgets.prompt import PromptInput
from tui_gpt.app.widgets.topk import TopKBars
from tui_gpt.app.widgets.training import TrainingPane
from tui_gpt.hints import run_hints
from tui_gpt.protocol import Pause, Ready, Resume, Save, Saved, Step
from tui_gpt.settings import RunSpec

if TYPE_CHECKING:
    from tui_gpt.lens import Lens

MIN_SIZE = (60, 20)
DEFAULT_PROMPT = "The quick brown"


class GPTApp(App[None]):
    """Train a GPT in a background process and probe it while it learns."""

    TITLE = "tui-gpt"
    CSS_PATH = "app.tcss"
    BINDINGS = keymap.bindings()  # the keys, the palette and the help screen all come from one table

    def __init__(
        self,
        spec: RunSpec,
        out: str,
        client_factory: Callable[[Callable[[Any], None]], Any] | None = None,
        prompt: str = DEFAULT_PROMPT,
        autosave: float = 0,
    ) -> None:
        super().__init__()
        self.launch_spec = spec  # until the trainer reports the spec in force
        self.reported: RunSpec | None = None
        self.out = out
        self.initial_prompt = prompt
        self.lens: Lens | None = None  # the run's model, for every probe; None until the run is ready
        self.ready: Ready | None = None
        self.saves_on_quit = False
        self.final_save: Saved | None = None  # what the quit saved, for the line printed after the app
        self.signalled: int | None = None  # the signal that ended the app, if one did
        self.temperature = 1.0
        self.top_k = 10
        self.leaving = False  # quitting: trainer events and timers no longer touch the screen
        self.probes = Probes(self)
        self.lab = Lab(self)
        self.run_status = RunStatus(self)
        self.quitting = Quitting(self)
        self.relay = LensRelay(self)
        self.router = Router()
        self.run_status.connect(self.router)
        self.lab.connect(self.router)
        if client_factory is None:
            from tui_gpt.client import TrainerClient

            self.client = TrainerClient(self.relay.from_trainer, out=out, autosave=autosave)
        else:
            self.client = client_factory(self.relay.from_trainer)

    # ---- what the app shows -------------------------------------------------------
    @property
    def spec(self) -> RunSpec:
        """The settings the trainer reports in force (the launch settings until it does)."""
        return self.reported or self.launch_spec

    @property
    def prompt(self) -> PromptInput:
        return self.query_one(PromptInput)

    @property
    def training(self) -> TrainingPane:
        return self.query_one(TrainingPane)

    @property
    def attention(self) -> AttentionMap:
        return self.query_one(AttentionMap)

    @property
    def step(self) -> int:
        return self.run_status.step

    @property
    def paused(self) -> bool:
        return self.run_status.paused

    @property
    def error(self) -> str | None:
        return self.run_status.error

    @property
    def saved(self) -> Saved | None:
        return self.run_status.saved

    @property
    def pinned(self) -> dict | None:
        return self.lab.pin.pinned

    @property
    def mask_off(self) -> bool:
        return self.lab.mask.off

    @property
    def last_sample(self) -> str | None:
        return self.lab.memorization.last_sample

    def passages(self) -> list[str]:
        return (self.ready.corpus.get("passages") or []) if self.ready else []

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
            for sig in (signal.SIGHUP, signal.SIGTERM, signal.SIGINT):
                loop.add_signal_handler(sig, self._on_signal, sig)
        if not getattr(self.client, "started", True) or not self.client.alive:
            self.call_after_refresh(self.client.start, self.spec)  # after the first paint

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
    def on_lens_ready(self, message: LensReady) -> None:
        if not self.leaving:
            self.relay.ready(message)

    def on_weights_staged(self, message: WeightsStaged) -> None:
        if not self.leaving:
            self.relay.weights(message)

    def on_trainer_event(self, message: TrainerEvent) -> None:
        if not self.leaving:
            self.router.route(message.event)

    @on(Input.Changed, "#prompt")
    def _prompt_changed(self) -> None:
        self.probes.prompt_changed()

    def redraw_chart(self) -> None:
        """The chart and its hints, if the curve changed (a timer of the main screen)."""
        if not self.leaving and self.training.redraw() and self.ready is not None:
            self.training.show_hints(run_hints(self.training.curve.history(), self.ready.baselines))

    # ---- actions -----------------------------------------------------------------
    def action_help(self) -> None:
        from tui_gpt.app.screens.help import HelpScreen  # Markdown is slow to import: not before first paint

        self.push_screen(HelpScreen())

    def action_lab(self, name: str, method: str = "start") -> None:
        getattr(getattr(self.lab, name), method)()

    def action_toggle_pause(self) -> None:
        paused = self.run_status.paused = not self.paused
        self.client.send(Pause() if paused else Resume())
        self.run_status.show("paused" if paused else "training")

    def action_step(self) -> None:
        if not self.paused:
            self.action_toggle_pause()
        self.client.send(Step(1))

    def action_save(self) -> None:
        self.client.send(Save(self.out))

    def action_layer(self) -> None:
        self.attention.action_layer(1)

    def action_head(self) -> None:
        self.attention.action_head(1)

    def action_attention_mode(self) -> None:
        self.attention.action_mode()

    def action_temperature(self, delta: float) -> None:
        self.temperature = round(min(5.0, max(0.1, self.temperature + delta)), 2)
        self.query_one(TopKBars).temperature = self.temperature
        self.probes.refresh()

    def action_top_k(self, delta: int) -> None:
        self.top_k = min(40, max(1, self.top_k + delta))
        self.query_one(TopKBars).k = self.top_k
        self.probes.refresh()

    def action_words(self) -> None:
        self.probes.flip()

    def action_examples_source(self) -> None:
        self.probes.next_source()

    def action_load_text(self) -> None:
        resets.load_text(self)

    def action_reset_model(self) -> None:
        resets.reset_model(self)

    def reset(self, spec: RunSpec) -> None:
        """Start the run again from `spec`; the trainer keeps the old one if the new one fails."""
        self.relay.forget()
        self.training.curve.set_history({})
        if self.client.alive:
            self.client.reset(spec)
        else:
            self.launch_spec, self.reported = spec, None
            self.client.start(spec)
        self.run_status.restart()

    def action_restart_trainer(self) -> None:
        self.run_status.error = None
        self.client.start(self.spec)
        self.run_status.show("restarting")

    async def action_quit(self) -> None:
        if not self.leaving:
            self.run_status.show("saving… (a large model takes a while)" if self.ready else "quitting")
            self.quitting.start()

    def _on_signal(self, sig: int) -> None:
        self.signalled = sig
        self.call_later(self.action_quit)

    def on_hung_up(self, message: HungUp) -> None:
        self._on_signal(signal.SIGHUP)  # a served tab closed: the same save and exit as a terminal's hang-up

    def get_driver_class(self) -> type[Driver]:
        return served_driver(super().get_driver_class())

    def exit(self, *args: Any, **kwargs: Any) -> None:
        self.leaving = True
        super().exit(*args, **kwargs)

    def get_system_commands(self, screen: Screen) -> Iterable[SystemCommand]:
        yield from super().get_system_commands(screen)
        yield from palette.commands(self)
