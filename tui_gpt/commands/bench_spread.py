"""The spread of repeated `bench --ui` runs: each figure's min / median / max, and how many runs met its bar.

One run can be lucky; a bar is met when every run meets it, so the report never picks a best run.
"""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass


@dataclass(frozen=True)
class Bar:
    """A figure's bar: `key` names the figure in a run's figures, `most` says whether `limit` is a ceiling."""

    key: str
    label: str
    limit: float
    most: bool = True  # True: the figure must be at most `limit`; False: at least
    unit: str = "ms"

    def met(self, value: float) -> bool:
        """Whether `value` meets the bar; a figure that is missing (NaN) never does."""
        if math.isnan(value):
            return False
        return value <= self.limit if self.most else value >= self.limit

    def show(self, value: float) -> str:
        if self.unit == "%":
            return f"{100 * value:.0f}%"
        if self.unit == "s":
            return f"{value:.3f} s"
        return f"{value:.1f} ms"

    @property
    def rule(self) -> str:
        return f"{'<=' if self.most else '>='} {self.show(self.limit)}"


def ui_bars(large: bool, paint: bool) -> list[Bar]:
    """The bars of `bench --ui`: a `--model` (large) has its own, the default model's add the 6 x 384 lines."""
    if large:
        return [
            Bar("topk_p95_ms", "key -> next tokens p95", 150),
            Bar("words_p95_ms", "key -> next words p95", 400),
            Bar("idle_ratio", "training while idle", 0.85, most=False, unit="%"),
            Bar("typing_ratio", "training while typing", 0.50, most=False, unit="%"),
        ]
    bars = [
        Bar("topk_p95_ms", "key -> next tokens p95", 33),
        Bar("topk_max_ms", "key -> next tokens max", 100),
        Bar("words_p95_ms", "key -> next words p95", 50),
        Bar("big_topk_p95_ms", "6 x 384: key -> next tokens p95", 33),
        Bar("big_words_p95_ms", "6 x 384: key -> next words p95", 50),
        Bar("idle_ratio", "training while idle", 0.85, most=False, unit="%"),
        Bar("typing_ratio", "training while typing", 0.50, most=False, unit="%"),
    ]
    if paint:
        bars.append(Bar("first_paint_s", "launch -> first paint, median", 0.4, unit="s"))
    return bars


def spread_lines(runs: list[dict[str, float]], bars: list[Bar]) -> list[str]:
    """Per figure: every run's value, min / median / max, and how many runs met the bar; then all bars at once."""
    n = len(runs)
    lines = [f"spread over {n} back-to-back run{'s' if n != 1 else ''} (every run counts, none is picked):"]
    all_met = [True] * n
    for bar in bars:
        values = [run.get(bar.key, math.nan) for run in runs]
        met = [bar.met(v) for v in values]
        all_met = [a and m for a, m in zip(all_met, met, strict=True)]
        known = [v for v in values if not math.isnan(v)]
        each = ", ".join("-" if math.isnan(v) else bar.show(v) for v in values)
        span = (
            f"min {bar.show(min(known))}, median {bar.show(statistics.median(known))}, max {bar.show(max(known))}"
            if known
            else "no figure"
        )
        lines.append(f"  {bar.label}: {each}  ({span}); bar {bar.rule}: met in {sum(met)} of {n}")
    lines.append(f"  every bar met in {sum(all_met)} of {n} runs")
    return lines
