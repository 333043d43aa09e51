"""The training pane: the live loss chart with baselines and earlier runs, the run's numbers, hints, the pinned
example, the corpus."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from textual.app import ComposeResult
from textual.containers import Vertical
from textual.content import Content
from textual.widgets import Sparkline

from tui_gpt.app.widgets.curve import BEST_MARKER, LINE_COLOURS, Curve
from tui_gpt.app.widgets.line import InfoLine

if TYPE_CHECKING:
    from tui_gpt.app.widgets.loss_chart import LossChart
    from tui_gpt.app.widgets.overlay_lines import OverlayLine


class TrainingPane(Vertical):
    """Owns the `Curve`; the chart itself is mounted just after the first paint."""

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self.curve = Curve()
        self.chart: LossChart | None = None  # once mounted

    def compose(self) -> ComposeResult:
        yield InfoLine(id="chart-slot")
        yield InfoLine(id="legend")
        # A short pane clips from the bottom: this run's step and numbers come before earlier runs' legend.
        yield InfoLine(id="train-stats")
        yield InfoLine(id="overlay-legend")
        yield InfoLine(id="hints")
        yield InfoLine(id="pinned")
        yield Sparkline([], id="pinned-chart")
        yield InfoLine(id="corpus-info")

    def on_mount(self) -> None:
        self.call_after_refresh(self._mount_chart)

    async def _mount_chart(self) -> None:
        from tui_gpt.app.widgets.loss_chart import LossChart

        if not self.is_attached:  # the app quit before its first frame settled
            return
        slot = self.query_one("#chart-slot")
        self.chart = chart = LossChart(self.curve, id="loss-chart")
        await self.mount(chart, before=slot)
        await slot.remove()
        self.curve.dirty = True

    def redraw(self) -> bool:
        """Redraw the chart if the curve changed; True if it did."""
        if self.chart is None or not self.curve.dirty:
            return False
        self.curve.dirty = False
        self.chart.redraw()
        return True

    def set_baselines(self, baselines: dict[str, float]) -> None:
        self.curve.baselines = baselines
        self.curve.dirty = True
        self.show_legend()

    def show_legend(self) -> None:
        """The line under the chart: its lines' colours, the baselines, the latest val loss in bits per byte."""
        c, b = LINE_COLOURS, self.curve.baselines
        if not b:
            return
        bpb = self.curve.val_bpb()
        self.query_one("#legend", InfoLine).text = (
            f"[${c['train']}]━ train[/] [${c['val']}]━ val{f' ({bpb:.3f} bpb)' if bpb is not None else ''}[/] "
            f"[${c['uniform']}]─ uniform ln V = {b['uniform']:.2f}[/]"
            f" [${c['bigram']}]─ bigram {b['bigram']:.2f}[/] · unigram {b['unigram']:.2f}"
        )

    def set_overlays(self, lines: list[OverlayLine], axis: str) -> None:
        """Earlier runs to draw faintly along `axis`, and their legend: what differs from this run."""
        self.curve.overlays, self.curve.axis = lines, axis
        self.curve.dirty = True
        legend = self.query_one("#overlay-legend", InfoLine)
        legend.set_class(bool(lines), "-on")
        # The labels hold settings (a file name among them): $variables, never markup.
        markup = "  ".join(f"[${line.colour}]┄ $label{i}[/]" for i, line in enumerate(lines))
        legend.text = Content.from_markup(markup, **{f"label{i}": line.label for i, line in enumerate(lines)})
        legend.refresh(layout=True)  # its height follows its lines

    def set_run(self, ready: Any) -> None:
        """A new run is ready: its loss history, its baselines and a line about its text and model."""
        self.curve.set_history(ready.history)
        self.curve.tokens_per_step = ready.corpus.get("tokens_per_step", 0)
        self.curve.train_tokens = ready.corpus.get("train_tokens", 0)
        self.set_baselines(ready.baselines)
        c = ready.corpus
        # The corpus is named by its files and the choice note may come from a cache file: $variables, not markup.
        markup = (
            f"[b]$name[/b]: {c['files']} files · {c['chars']:,} chars · "
            f"{c['train_tokens']:,}+{c['val_tokens']:,} tokens (train+val) · $tokenizer vocab "
            f"{c['vocab_size']:,} · {c['params'] / 1e6:.2f} M params · $device $dtype · $dropout"
            + ("\n[$text-muted]$choice[/]" if ready.choice else "")
        )
        values = {
            "tokenizer": c["tokenizer"],
            "device": ready.device,
            "dtype": ready.dtype,
            "choice": ready.choice,
            "dropout": dropout_text(ready.spec),
        }
        self.set_corpus(Content.from_markup(markup, name=c["name"], **values))

    def show_stats(self, status: str, step: int, last: dict | None, error: str | None) -> None:
        """Two lines: where the run is, then how far (epochs, the best val loss) and how fast it goes (or the error).

        The status ("loading my[v2].txt") and the error name files: they go in as $variables, never as markup.
        """
        first = ["[b]$status[/b]", f"step [b]{step:,}[/b]"]
        if (epoch := self.curve.epoch(step)) is not None:
            first.append(f"epoch {epoch:.{2 if epoch < 1 else 1}f}")  # passes over the training text
        second = []  # each line stays one line (app.tcss): a narrow pane cuts its end, never the next line
        if (best := self.curve.best_val()) is not None:  # the chart's marker: where val was lowest
            second.append(f"[${LINE_COLOURS['val']}]{BEST_MARKER}[/] best val {best[1]:.3f} at step {best[0]:,}")
        if last:
            first.append(f"train {last['loss']:.3f}")
            second += [
                f"{last['tokens_per_s']:,.0f} tok/s",
                f"lr {last['lr']:.2e}",
                f"{clock(last['elapsed'])} elapsed",
            ]
        self.show_legend()  # the latest val loss in bits per byte
        if self.curve.eval_val:
            at = self.curve.eval_steps[-1]
            first.append(f"val {self.curve.eval_val[-1]:.3f}" + (f" (at step {at:,})" if at != step else ""))
        second_line = "[b $error]error:[/] $message" if error else " · ".join(second)
        self.query_one("#train-stats", InfoLine).text = Content.from_markup(
            " · ".join(first) + "\n" + second_line, status=status, message=error or ""
        )

    def show_hints(self, hints: Sequence[Any]) -> None:
        colour = {"info": "$text-muted", "warn": "$warning", "error": "$error"}
        self.query_one("#hints", InfoLine).text = "  ".join(f"[{colour[h.severity]}]{h.text}[/]" for h in hints[:2])

    def show_pinned(self, text: str | Content, series: list[float]) -> None:
        chart = self.query_one("#pinned-chart", Sparkline)
        chart.data = series
        chart.add_class("-on")
        self.query_one("#pinned", InfoLine).text = text

    def set_mask_off(self, off: bool) -> None:
        self.set_class(off, "-mask-off")
        self.border_title = "Training · MASK OFF (f2 to restore)" if off else "Training"

    def set_corpus(self, text: str | Content) -> None:
        self.query_one("#corpus-info", InfoLine).text = text


def clock(seconds: float) -> str:
    if not math.isfinite(seconds):
        return "-"
    m, s = divmod(int(seconds), 60)
    h, m = divmod(m, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m}:{s:02d}"


def dropout_text(spec: Any) -> str:
    """The run's dropout, and why when the app chose it from the text's size: "dropout 0.1: medium text, ..."."""
    dropout = getattr(spec, "dropout", None) or 0.0
    note = getattr(spec, "dropout_note", "")
    return f"dropout {dropout:g}: {note}" if note else f"dropout {dropout:g}"
