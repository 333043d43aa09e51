"""What the app's controllers share, and the doors they get instead of the app.

The app (app.py) owns and writes `LiveRun` and `ProbeSettings`; a controller reads them, and asks
for a change by posting a message (messages.py) that app.py handles.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from textual.app import App

    from tui_gpt.link.client import TrainerClient
    from tui_gpt.link.protocol import Ready
    from tui_gpt.probes.replica import Replica
    from tui_gpt.settings import RunSpec


@dataclass
class LiveRun:
    """The run the app shows: its settings, its Replica, what the trainer reported, whether the app is leaving."""

    launch_spec: RunSpec  # until the trainer reports the spec in force
    out: str  # the checkpoint folder
    reported: RunSpec | None = None
    replica: Replica | None = None  # the run's model, for every probe; None until the run is ready
    ready: Ready | None = None
    leaving: bool = False  # quitting: trainer events and timers no longer touch the screen
    signalled: int | None = None  # the signal that ended the app, if one did

    @property
    def spec(self) -> RunSpec:
        """The settings the trainer reports in force (the launch settings until it does)."""
        return self.reported or self.launch_spec

    def passages(self) -> list[str]:
        return (self.ready.corpus.get("passages") or []) if self.ready else []


@dataclass
class ProbeSettings:
    """How the probes sample and what they mark: the keys' temperature and top-k, the mask experiment."""

    run: LiveRun  # whose spec says whether the mask is on
    temperature: float = 1.0
    top_k: int = 10

    @property
    def mask_off(self) -> bool:
        """The mask experiment runs (the greedy line says so): read from the run's spec, never kept apart."""
        return not self.run.spec.causal


@dataclass(frozen=True)
class Doors:
    """What a controller may reach: Textual's services, the shared state (to read), the trainer client."""

    ui: App[Any]  # Textual's services: query_one, notify, push_screen, run_worker, post_message, ...
    run: LiveRun
    settings: ProbeSettings
    client: TrainerClient
