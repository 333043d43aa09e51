"""Is this normal? Hints that read a run's loss curve against its count baselines."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

Severity = Literal["info", "warn", "error"]
SMOOTH = 20  # steps averaged for the "current" train loss: one batch is too noisy to judge
GRACE_STEPS = 50  # before this, a loss above ln V is just the random start
RISE = 1.5  # the smoothed loss growing by half over SMOOTH steps is divergence, not noise
OVERFIT_GAP = 0.1  # nats of val - train below which a rising val is within evaluation noise
# How much val must rise over the window to count: SGD moves a learning model's val by a few tenths of a
# percent between evaluations; 1% over three of them is a trend (a 10-minute default run never did).
OVERFIT_RISE = 0.01
# And how far above its best: at a constant lr a learning model's val swings by up to 3% between
# evaluations (two 10-minute default runs warned at 4:43 and 5:40, then set new bests); a model that
# memorizes is soon far above (the fables alone: 3.98 -> 4.66 in 500 steps; a 48 KB text with
# dropout 0.2: 3.48 -> 3.74).
OVERFIT_ABOVE_BEST = 0.05
MEMORIZED_GAP = 1.0  # nats of val above train: a small text is learned by heart, not learned from


@dataclass(frozen=True)
class Hint:
    """One observation about a run: what it means and what to try."""

    kind: str  # nan | diverging | above_unigram | below_bigram | overfitting | memorizing | memorized | ok
    severity: Severity
    text: str


def best_eval(steps: Sequence[float], vals: Sequence[float]) -> tuple[int, float] | None:
    """(step, val loss) of the lowest finite val loss so far, the earliest on a tie; None before any."""
    best: tuple[int, float] | None = None
    for step, val in zip(steps, vals, strict=False):
        if math.isfinite(val) and (best is None or val < best[1]):
            best = (int(step), float(val))
    return best


def _finite_mean(values: Sequence[float]) -> float:
    vals = [v for v in values if math.isfinite(v)]
    return sum(vals) / len(vals) if vals else math.nan


def run_hints(
    history: Mapping[str, Sequence[float]],
    baselines: Mapping[str, float],
    window: int = 3,
    small_text: tuple[str, int] | None = None,
) -> list[Hint]:
    """Hints about a run from its `History.to_dict()` and its count baselines (uniform, unigram, bigram; nats).

    `window` is the number of recent evaluations compared for overfitting. `small_text`, (what the text
    is, its training tokens), says the run trains on a text small enough to learn by heart on purpose
    (the lab's overfitting experiment): a hint then says what to watch for, and then what happened.
    """
    if window < 2:
        raise ValueError(f"window must be at least 2 evaluations, got {window}")
    steps = list(history.get("steps", []))
    loss = [float(v) for v in history.get("loss", [])]
    ev_train = [float(v) for v in history.get("eval_train", [])]
    ev_val = [float(v) for v in history.get("eval_val", [])]
    if not loss and not ev_val:
        return []
    if loss and not math.isfinite(loss[-1]):
        word = "NaN" if math.isnan(loss[-1]) else "infinite"
        # Nothing else is meaningful once the weights are gone.
        return [Hint("nan", "error", f"the loss is {word}: lower the learning rate (--lr) or reset")]
    hints: list[Hint] = []
    smoothed = _finite_mean(loss[-SMOOTH:]) if loss else math.nan
    diverging = _diverging(steps, loss, smoothed, baselines.get("uniform"))
    if diverging is not None:
        hints.append(diverging)
    elif loss:  # comparing a diverging loss with the baselines would only repeat the alarm
        hints += _against_baselines(smoothed, baselines.get("unigram"), baselines.get("bigram"))
    if len(ev_val) >= window and len(ev_train) >= window:
        best = best_eval(list(history.get("eval_steps", [])), ev_val)
        hints += _overfitting(ev_train[-window], ev_train[-1], ev_val[-window], ev_val[-1], best)
    if small_text is not None:  # it says more than the overfitting hint, after an alarm (an error) only
        hints = [h for h in hints if h.kind != "overfitting"]
        hints.insert(sum(h.severity == "error" for h in hints), memorized(small_text, ev_train, ev_val))
    if not hints:
        now = f" (train loss {smoothed:.2f})" if math.isfinite(smoothed) else ""
        hints.append(Hint("ok", "info", f"nothing unusual{now}: no sign of divergence or overfitting"))
    return hints


def _diverging(steps: list[float], loss: list[float], smoothed: float, uniform: float | None) -> Hint | None:
    """The alarm, if the smoothed loss is worse than guessing (past the grace steps) or grew by half lately."""
    if loss and uniform is not None and steps and steps[-1] >= GRACE_STEPS and smoothed > uniform:
        return Hint(
            "diverging",
            "error",
            f"the loss {smoothed:.2f} is above the uniform baseline ln V = {uniform:.2f}, worse than guessing: "
            "the run is diverging; lower --lr (try half) or lengthen --warmup, then reset",
        )
    if len(loss) >= 2 * SMOOTH:
        before = _finite_mean(loss[-2 * SMOOTH : -SMOOTH])
        if smoothed > RISE * before:
            return Hint(
                "diverging",
                "error",
                f"the loss rose from {before:.2f} to {smoothed:.2f} over the last {SMOOTH} steps: the run is "
                "diverging; lower --lr (try half) or lengthen --warmup, then reset",
            )
    return None


def _against_baselines(smoothed: float, unigram: float | None, bigram: float | None) -> list[Hint]:
    """Where the smoothed loss stands against the unigram and bigram baselines."""
    hints = []
    if unigram is not None and smoothed > unigram:
        hints.append(
            Hint(
                "above_unigram",
                "info",
                f"still above the unigram baseline {unigram:.2f}: the model has not yet learned which tokens "
                "are common; keep training",
            )
        )
    if bigram is not None and smoothed < bigram:
        hints.append(
            Hint(
                "below_bigram",
                "info",
                f"below the bigram baseline {bigram:.2f}: it now uses more than the previous token",
            )
        )
    return hints


def _overfitting(t0: float, t1: float, v0: float, v1: float, best: tuple[int, float] | None = None) -> list[Hint]:
    """The warning, if val rose while train fell between two evaluations (t0, v0 the earlier).

    `best` is (step, val loss) of the best evaluation so far (`best_eval`): the warning names it.
    """
    # NaN (an evaluation without a train loss) fails every comparison, so it never warns.
    above_best = best is None or v1 > best[1] * (1 + OVERFIT_ABOVE_BEST)
    if v1 > v0 * (1 + OVERFIT_RISE) and t1 < t0 and v1 - t1 > OVERFIT_GAP and above_best:
        # The word first: a narrow Training pane cuts the line's end.
        since = f"val was best at step {best[0]:,} ({best[1]:.2f}) and " if best is not None else "val "
        return [
            Hint(
                "overfitting",
                "warn",
                f"overfitting: {since}is rising while train falls ({v0:.2f} → {v1:.2f} vs {t0:.2f} → {t1:.2f}); "
                "try more text, --dropout 0.1-0.2, a smaller model, or stop here (--keep best "
                "keeps the best weights)",
            )
        ]
    return []


def memorized(small_text: tuple[str, int], ev_train: Sequence[float], ev_val: Sequence[float]) -> Hint:
    """What a run on a text small enough to learn by heart shows, in a learner's words: what to watch for,
    until its last evaluation puts val above train by MEMORIZED_GAP; then, what happened."""
    what, tokens = small_text
    pairs = [(t, v) for t, v in zip(ev_train, ev_val, strict=False) if math.isfinite(t) and math.isfinite(v)]
    if pairs and pairs[-1][1] - pairs[-1][0] > MEMORIZED_GAP:
        train, val = pairs[-1]
        return Hint(
            "memorized",
            "warn",
            f"{what} is ~{tokens} tokens: the model has learned it by heart (train {train:.2f}) but cannot guess "
            f"a new sentence (val {val:.2f}); this is overfitting: more text, dropout, or a smaller model help",
        )
    return Hint(
        "memorizing",
        "info",
        f"{what} is only ~{tokens} tokens, too little to learn a language from: watch train fall while val "
        "stops falling and rises, as the model learns this one text by heart",
    )
