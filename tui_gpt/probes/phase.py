"""The induction phase change: the few steps in which a head starts to copy and in-context loss drops.

Olsson et al. (2022) saw induction heads form abruptly: within a short window of training the best
head's induction score jumps and the loss on repeated text (the in-context score) falls with it.
This module reads that window off a run's head scores (`History.head_steps`, `head_scores`), so the
heads chart, the lab experiment and `tui-gpt circuits` mark the same step and say it in the same words.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

MIN_RISE = 0.2  # the best induction score must gain this much (attention is 0..1): less is drift, not a head
EDGE = 0.1  # the window runs from 10% to 90% of the rise


@dataclass(frozen=True)
class PhaseChange:
    """Where the best head's induction score crossed halfway between its first and its highest reading."""

    step: int  # the halfway crossing: the mark on the chart
    start: int  # the step of the last reading below 10% of the rise
    end: int  # the step of the first reading above 90% of it
    layer: int  # the copying head, from 1, as people count
    head: int
    induction_before: float  # best induction score at `start`, and at `end`
    induction_after: float
    icl_before: float  # the repeat probe's in-context score (nats) at `start`, and at `end`
    icl_after: float

    def words(self) -> str:
        """What happened, in a learner's words."""
        return (
            f"layer {self.layer} head {self.head} now copies: it attends to the token after the earlier "
            f"occurrence of the current one. Between steps {self.start:,} and {self.end:,} its induction score "
            f"went {self.induction_before:.2f} -> {self.induction_after:.2f} and the loss on repeated text "
            f"changed by {self.icl_after - self.icl_before:+.2f} nats "
            f"({self.icl_before:+.2f} -> {self.icl_after:+.2f})."
        )


def best_head(induction: Sequence[Sequence[float]]) -> tuple[int, int, float]:
    """(layer from 1, head from 1, score) of the highest induction score in a (n_layer, n_head) table."""
    layer, head, score = max(
        ((li, hi, s) for li, row in enumerate(induction) for hi, s in enumerate(row)), key=lambda t: t[2]
    )
    return layer + 1, head + 1, score


def find_phase_change(steps: Sequence[int], scores: Sequence[dict[str, Any]]) -> PhaseChange | None:
    """The phase change in a run's head scores, or None while the best induction score has not risen MIN_RISE.

    `steps` and `scores` are History.head_steps and History.head_scores. The rise is measured from the
    first reading to the highest one, on the head that is best at the highest reading.
    """
    if len(steps) < 3:
        return None
    peak = max(range(len(scores)), key=lambda i: best_head(scores[i]["induction"])[2])
    layer, head, top = best_head(scores[peak]["induction"])
    series = [best_head(s["induction"])[2] for s in scores]
    low = series[0]
    rise = top - low
    if rise < MIN_RISE:
        return None
    # the last reading before the peak still under 10% of the rise, and the first after it over 90%
    start = max((i for i in range(peak + 1) if series[i] <= low + EDGE * rise), default=0)
    end = next(i for i in range(start, peak + 1) if series[i] >= low + (1 - EDGE) * rise)
    mid = next(i for i in range(start, end + 1) if series[i] >= low + rise / 2)
    return PhaseChange(
        step=steps[mid],
        start=steps[start],
        end=steps[end],
        layer=layer,
        head=head,
        induction_before=series[start],
        induction_after=series[end],
        icl_before=float(scores[start]["icl"]),
        icl_after=float(scores[end]["icl"]),
    )
