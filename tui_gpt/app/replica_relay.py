"""The app's end of the weight stream: builds the Replica for each run and stages each snapshot.

The trainer client calls `from_trainer` on its reader thread, where the slow work (building a
model, loading weights) happens; it posts the result to the app, whose UI thread only swaps a
ready model in (app.py: `on_replica_ready`, `on_weights_staged`).
"""

from __future__ import annotations

import gc
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from textual.message import Message

from tui_gpt.app.messages import ReplicaReady, TrainerEvent, WeightsStaged
from tui_gpt.link.protocol import Command, Ready, SharedBuffer, TookWeights, Weights

if TYPE_CHECKING:
    from tui_gpt.probes.replica import Replica


class ReplicaRelay:
    def __init__(self, post: Callable[[Message], object], send: Callable[[Command], None]) -> None:
        self.post = post  # to the app, from any thread
        self.send = send  # to the trainer
        self.staging: Replica | None = None  # the replica that reader-thread snapshots load into
        self.shared: SharedBuffer | None = None  # the run's shared memory for snapshots, if it has one
        self._frozen = False

    def from_trainer(self, ev: Any) -> None:
        """Called on the client's reader thread: heavy work here, then a message to the UI."""
        if isinstance(ev, Ready):
            from tui_gpt.probes.replica import Replica, ui_threads

            ui_threads()
            replica = Replica(ev.tokenizer_json, ev.model_config)
            self.staging, self.shared = replica, None
            self.post(ReplicaReady(ev, replica))
        elif isinstance(ev, SharedBuffer):
            self.shared = ev
        elif isinstance(ev, Weights):
            staged, shared = self.staging, self.shared
            if ev.blob is not None and staged is not None:
                self.post(WeightsStaged(staged, staged.stage(ev.blob), ev.step))
            elif shared is not None:
                model = staged.stage(shared.shared.views()) if staged is not None else None
                self.send(TookWeights(shared.buffer))  # copied out: the trainer may write again
                if staged is not None and model is not None:
                    self.post(WeightsStaged(staged, model, ev.step))
        else:
            self.post(TrainerEvent(ev))

    def settled(self) -> None:
        """The first run is on screen: start-up's long-lived objects out of the collector's way (fewer spikes)."""
        if not self._frozen:
            gc.collect()
            gc.freeze()
            self._frozen = True

    def forget(self) -> None:
        """A reset: snapshots of the old run load into nothing until the new run is ready."""
        self.staging = None
