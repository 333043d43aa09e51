"""What a run reports to the places that remember it: the run registry, TensorBoard, trackio.

Torch-free and Textual-free. A front end (`train`, `bench`, the app's trainer, `sweep`) builds a
`RunInfo` when a run starts, and hands every `EvalRow` and the end to each `Sink`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, Protocol


@dataclass
class RunInfo:
    """A run as it starts: what it is, on what text, and how to run it again."""

    kind: str  # "app" | "train" | "bench" | "sweep"
    settings: dict  # RunSpec.to_dict() without `given`: the settings that make the run
    tokenizer: str  # "char" | "bpe" | "word" | "gpt2" (a --model's)
    text_name: str  # what the corpus is called ("fables", a file name)
    text_digest: str  # corpus.combined_digest: runs on the same text share it
    reproduce: str  # settings.reproduce_command(spec)
    checkpoint: str | None = None  # where the run saves, if anywhere
    name: str = ""  # a short label ("lr 1e-3 seed 2"); empty: derived from the settings
    sweep: str = ""  # the sweep it belongs to (`tui-gpt sweep`), if any
    run_id: str = ""  # the run's own id, also in the checkpoints it saves; "" in rows of an older tui-gpt

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class EvalRow:
    """One evaluation of a run: where it was, and how it did."""

    step: int
    tokens: int  # tokens trained on so far (all ranks)
    wall_s: float  # seconds since the run started, evaluations included
    train: float  # eval train loss (nats per token)
    val: float  # val loss (nats per token)
    val_bpb: float | None = None  # val bits per byte (dataset.bits_per_byte); None where unknown
    lr: float | None = None
    tokens_per_s: float | None = None
    # The run's latest head reading at or before this evaluation (TrainEvent.heads, every --head-interval steps):
    heads_step: int | None = None  # the step it was read at
    induction: float | None = None  # the best induction score, and its head ("L2.H3", layers and heads from 1)
    induction_head: str | None = None
    previous_token: float | None = None  # the best previous-token score, and its head
    previous_token_head: str | None = None
    icl: float | None = None  # the repeat probe's second-half loss minus its first (nats)
    in_context: float | None = None  # the val text's late-token loss minus its early-token loss (nats)

    def add_heads(self, step: int, heads: dict[str, Any]) -> None:
        """Fill in the head columns from a `TrainEvent.heads` reading taken at `step`."""
        self.heads_step = step
        self.induction_head, self.induction = best_head(heads["induction"])
        self.previous_token_head, self.previous_token = best_head(heads["previous_token"])
        self.icl, self.in_context = heads["icl"], heads.get("in_context")


def best_head(table: Sequence[Sequence[float]]) -> tuple[str, float]:
    """("L2.H3", score) of the highest score in a (n_layer, n_head) table; layers and heads count from 1."""
    # the first of equal scores, as probes.phase.best_head (runs and probes are separate floors: not imported)
    score, layer, head = max(
        ((s, li, hi) for li, row in enumerate(table) for hi, s in enumerate(row)), key=lambda t: t[0]
    )
    return f"L{layer + 1}.H{head + 1}", score


@dataclass
class RunEnd:
    """How a run ended."""

    status: str  # "done" | "stopped" (Ctrl+C, a signal, the app quit) | "failed"
    step: int
    wall_s: float
    tokens_per_s: float
    checkpoint: str | None = None
    extra: dict = field(default_factory=dict)


class Sink(Protocol):
    """A place a run is reported to.

    `start` may refuse in one line (TuiGptError: a corrupt registry, a missing optional package),
    before any training; after that a failing sink warns once and is dropped, never stops the run.
    """

    def start(self, run: RunInfo) -> None: ...

    def eval(self, row: EvalRow) -> None: ...

    def finish(self, end: RunEnd) -> None: ...
