"""The training pane: the live loss chart with baselines, the run's numbers and the corpus."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.containers import Vertical
from textual.widgets import Sparkline

from tui_gpt.app.widgets.curve import Curve
from tui_gpt.app.widgets.line import InfoLine


class TrainingPane(Vertical):
    """Owns the `Curve`; the chart itself is mounted just after the first paint."""

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self.curve = Curve()
        self.chart = None  # LossChart, once mounted

    def compose(self) -> ComposeResult:
        yield InfoLine(id="chart-slot")
        yield InfoLine(id="legend")
        yield InfoLine(id="train-stats")
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
        self.chart = LossChart(self.curve, id="loss-chart")
        await self.mount(self.chart, before=slot)
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
        self.query_one("#legend", InfoLine).text = (
            f"[cyan]━ train[/] [magenta]━ val[/] [gray]─ uniform ln V = {baselines['uniform']:.2f}[/]"
            f" [orange1]─ bigram {baselines['bigram']:.2f}[/] · unigram {baselines['unigram']:.2f}"
        )

    def set_stats(self, text: str) -> None:
        self.query_one("#train-stats", InfoLine).text = text

    def set_corpus(self, text: str) -> None:
        self.query_one("#corpus-info", InfoLine).text = text
