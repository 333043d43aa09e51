"""The heads view: every head's induction and previous-token scores as live heatmaps, the best induction score
and the in-context scores over training, and the phase change marked on the chart and said in words (#28).

The trainer measures the scores every N steps (`TrainEvent.heads`) and the training pane's `Curve` keeps them;
the view only draws what has arrived. A new reading redraws it as its `Losses` event comes in; nothing is
computed here beyond reading the phase change off those numbers (probes/phase.py).
"""

from __future__ import annotations

import math
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from textual.app import ComposeResult
from textual.containers import Horizontal, VerticalScroll
from textual.content import Content
from textual.screen import ModalScreen
from textual.widgets import Static

from tui_gpt.app import keymap
from tui_gpt.app.lab import Experiment
from tui_gpt.app.widgets.curve import HEAD_COLOURS as COLOURS
from tui_gpt.app.widgets.head_grid import HeadGrid
from tui_gpt.link.protocol import Losses
from tui_gpt.probes.phase import MIN_RISE, PhaseChange, best_head, find_phase_change

if TYPE_CHECKING:
    from tui_gpt.app.state import LiveRun
    from tui_gpt.app.widgets.curve import Curve
    from tui_gpt.app.widgets.head_chart import HeadChart

POLL_S = 0.5  # a reset swaps the curve's lists without a Losses event: the timer notices
NOTE = (
    "A previous-token head attends from each token to the one just before it. "
    "An induction head attends to the token that followed the earlier occurrence of the current one, "
    "so it can copy what came next: after A B … A it predicts B. "
    "Scores are the mean attention on those tokens: 1 = all of it, near 0 = none."
)


class Series:
    """The chart's series, one point per reading, extended as readings arrive: a reading is read once, not on
    every redraw (a long run of a large model has a thousand readings of a hundred heads)."""

    def __init__(self) -> None:
        self.steps: list[int] = []
        self.best: list[float] = []  # the best head's induction score at each reading
        self.icl: list[float] = []
        self.in_context: list[tuple[int, float]] = []  # (step, nats) where the val text measured it
        self.light: list[dict[str, Any]] = []  # one-cell tables of the best scores, for find_phase_change
        self.peak = 0  # the reading with the highest best induction score (its first)

    def extend(self, steps: list[int], scores: list[dict[str, Any]]) -> None:
        for step, reading in zip(steps[len(self.steps) :], scores[len(self.steps) :], strict=True):
            self.steps.append(step)
            self.best.append(best_head(reading["induction"])[2])
            self.icl.append(float(reading["icl"]))
            self.light.append({"induction": [[self.best[-1]]], "icl": self.icl[-1]})
            if _known(reading):
                self.in_context.append((step, float(reading["in_context"])))
            if self.best[-1] > self.best[self.peak]:
                self.peak = len(self.best) - 1

    def phase_change(self, scores: list[dict[str, Any]]) -> PhaseChange | None:
        """probes.phase.find_phase_change of the readings, in time linear in their number.

        It reads each reading's best induction score and its icl, and the copying head off the peak reading's
        table: it gets one-cell tables of the best scores, and the head is named from the peak's full table.
        """
        found = find_phase_change(self.steps, self.light)
        if found is None:
            return None
        layer, head, _ = best_head(scores[self.peak]["induction"])
        return replace(found, layer=layer, head=head)


def waiting(interval: int | None) -> str:
    """What the view says before the first reading, from the run's head interval (None: not known)."""
    if interval == 0:
        return "Head scores are off for this run (--head-interval 0): start it with --head-interval N to see them."
    every = f"every {interval:,} steps" if interval else "at regular steps"
    return f"No head scores yet: head scores arrive {every}, measured by the trainer on a repeated random sequence."


class HeadsScreen(ModalScreen[None]):
    BINDINGS = keymap.bindings_of(keymap.HEADS)

    def __init__(self, live: LiveRun, curve: Curve) -> None:
        super().__init__()
        self.live, self.curve = live, curve
        self.shown: tuple[int, int] | None = None  # (the curve's list, its length) on screen
        self.phase: PhaseChange | None = None
        self.series = Series()
        self.chart: HeadChart | None = None

    def compose(self) -> ComposeResult:
        from tui_gpt.app.widgets.head_chart import HeadChart  # plotext: slow to import, not before the first paint

        with VerticalScroll(id="heads-body") as body:
            body.border_title = "Heads · which heads copy, live"
            body.border_subtitle = "esc closes"
            # Statics, not InfoLines: their text wraps to more lines as it changes (a layout pass, rarely)
            yield Static(id="heads-status")
            with Horizontal(id="heads-maps"):
                yield HeadGrid("Induction score", COLOURS["induction"], id="heads-induction")
                yield HeadGrid("Previous-token score", COLOURS["previous"], id="heads-previous")
            yield Static(id="heads-phase")
            self.chart = HeadChart(id="heads-chart")
            yield self.chart
            yield Static(id="heads-legend")
            yield Static(NOTE, id="heads-note", markup=False)

    def on_mount(self) -> None:
        self.sync()
        self.set_interval(POLL_S, self.sync)
        self.app.theme_changed_signal.subscribe(self, lambda _theme: self.sync(force=True))

    @property
    def interval(self) -> int:
        """Steps between the trainer's head readings (0: off)."""
        return self.live.spec.train.head_interval

    def sync(self, force: bool = False) -> None:
        """Draw the readings if new ones arrived since the last draw (cheap when none did)."""
        key = (id(self.curve.head_steps), len(self.curve.head_steps))
        if key == self.shown and not force:
            return
        if self.shown is None or key[0] != self.shown[0]:
            self.series = Series()  # a new run (or a reset): its readings from the first
        self.shown = key
        steps, scores = self.curve.head_steps, self.curve.head_scores
        self.set_class(not steps, "-waiting")
        if not steps:
            self.phase = None
            self.query_one("#heads-status", Static).update(waiting(self.interval))
            self.query_one("#heads-phase", Static).update("")
            return
        series = self.series
        series.extend(steps, scores)
        self.phase = series.phase_change(scores)
        latest = scores[-1]
        layer, head, score = best_head(latest["induction"])
        self.query_one("#heads-induction", HeadGrid).show(latest["induction"], (layer, head))
        self.query_one("#heads-previous", HeadGrid).show(latest["previous_token"])
        self.query_one("#heads-status", Static).update(self.status(steps, latest, layer, head, score))
        if self.chart is not None:
            mark = self.phase.step if self.phase else None
            self.chart.show(series.steps, series.best, series.icl, series.in_context, mark)
        self.query_one("#heads-legend", Static).update(self.legend(bool(series.in_context)))
        self.query_one("#heads-phase", Static).update(self.phase_text())

    def status(self, steps: list[int], latest: dict[str, Any], layer: int, head: int, score: float) -> Content:
        first = (
            f"[b]step {steps[-1]:,}[/b] · {len(steps):,} reading{'s' if len(steps) > 1 else ''} · "
            f"[${COLOURS['induction']}]best induction head: layer {layer} head {head}, {score:.2f}[/]"
        )
        second = f"[${COLOURS['icl']}]repeat loss, 2nd half − 1st: {float(latest['icl']):+.2f} nats[/]"
        if _known(latest):
            second += f" · [${COLOURS['in_context']}]val, late − early token: {latest['in_context']:+.2f} nats[/]"
        return Content.from_markup(first + "\n" + second)

    @staticmethod
    def legend(in_context: bool) -> str:
        c = COLOURS
        parts = [
            f"[${c['induction']}]━ best induction score (left)[/]",
            f"[${c['icl']}]━ repeat loss, 2nd half − 1st (right, nats)[/]",
        ]
        if in_context:
            parts.append(f"[${c['in_context']}]━ val, late − early token (nats)[/]")
        parts.append(f"[${c['phase']}]│ phase change[/]")
        return "  ".join(parts)

    def phase_text(self) -> str | Content:
        if self.phase is None:
            return Content.from_markup(
                f"[$text-muted]No phase change yet: it is marked when the best induction score rises "
                f"{MIN_RISE:.1f} or more above its first reading.[/]"
            )
        return Content.from_markup(
            f"[b ${COLOURS['phase']}]Phase change at step {self.phase.step:,}:[/] $words", words=self.phase.words()
        )


def _known(reading: dict[str, Any]) -> bool:
    """Whether a reading has an in-context score on the val text (None where the text or block was too short)."""
    value = reading.get("in_context")
    return value is not None and math.isfinite(value)


class HeadsExperiment(Experiment):
    """Opens the heads view (a key, or the phase-change experiment from code: `start`); feeds it each Losses."""

    replies = (Losses,)

    def start(self) -> None:
        if self.screen() is None:
            self.ui.push_screen(HeadsScreen(self.run, self.training.curve))

    def screen(self) -> HeadsScreen | None:
        return next((s for s in self.ui.screen_stack if isinstance(s, HeadsScreen)), None)

    def on_reply(self, event: Losses) -> None:
        # The status controller has added the events to the curve already (it was routed first).
        if (screen := self.screen()) is not None and any(ev.get("heads") is not None for ev in event.events):
            screen.sync()
