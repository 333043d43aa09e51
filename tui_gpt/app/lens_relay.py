"""The app's end of the weight stream: builds the Lens for each run and swaps in each snapshot.

The trainer client calls `from_trainer` on its reader thread, where the slow work (building a
model, loading weights) happens; the UI thread only swaps a ready model in.
"""

from __future__ import annotations

import gc
from typing import TYPE_CHECKING, Any

from tui_gpt.app.messages import LensReady, TrainerEvent, WeightsStaged
from tui_gpt.protocol import Pause, Ready, SharedBuffer, TookWeights, Weights

if TYPE_CHECKING:
    from tui_gpt.app.app import GPTApp
    from tui_gpt.lens import Lens


class LensRelay:
    def __init__(self, app: GPTApp) -> None:
        self.app = app
        self.staging: Lens | None = None  # the lens that reader-thread snapshots load into
        self.shared: SharedBuffer | None = None  # the run's shared memory for snapshots, if it has one
        self._frozen = False

    def from_trainer(self, ev: Any) -> None:
        """Called on the client's reader thread: heavy work here, then a message to the UI."""
        if isinstance(ev, Ready):
            from tui_gpt.lens import Lens, ui_threads

            ui_threads()
            lens = Lens(ev.tokenizer_json, ev.model_config)
            self.staging, self.shared = lens, None
            self.app.post_message(LensReady(ev, lens))
        elif isinstance(ev, SharedBuffer):
            self.shared = ev
        elif isinstance(ev, Weights):
            lens, shared = self.staging, self.shared
            if ev.blob is not None and lens is not None:
                self.app.post_message(WeightsStaged(lens, lens.stage(ev.blob), ev.step))
            elif shared is not None:
                model = lens.stage(shared.shared.views()) if lens is not None else None
                self.app.client.send(TookWeights(shared.buffer))  # copied out: the trainer may write again
                if model is not None:
                    self.app.post_message(WeightsStaged(lens, model, ev.step))
        else:
            self.app.post_message(TrainerEvent(ev))

    def ready(self, message: LensReady) -> None:
        """A new run: its lens, its spec and its history go to every view."""
        app, status = self.app, self.app.run_status
        app.lens, app.ready, app.reported = message.lens, message.ready, message.ready.spec
        status.step, status.error = message.ready.step, None
        app.training.set_run(message.ready)
        if app.paused:
            app.client.send(Pause())
        status.show("paused" if app.paused else "training")
        app.probes.refresh()
        app.probes.update_greedy()
        if not self._frozen:
            # Start-up's long-lived objects out of the collector's way: fewer latency spikes.
            gc.collect()
            gc.freeze()
            self._frozen = True

    def weights(self, message: WeightsStaged) -> None:
        app = self.app
        if message.lens is not app.lens:
            return  # a snapshot of a run that has since been reset
        app.lens.swap(message.model, message.step)
        app.probes.refresh()
        app.lab.pin.track()
        if not app.probes.typing:
            app.probes.update_greedy()

    def forget(self) -> None:
        """A reset: no lens until the new run is ready."""
        self.app.lens = self.staging = None
