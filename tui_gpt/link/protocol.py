"""The messages between the app and its trainer process.

Plain dataclasses, no torch and no Textual: weights travel through shared memory or as safetensors
bytes (see `snapshots`).
App -> trainer: a `Command` subclass. Trainer -> app: the event classes below.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from tui_gpt.settings import RunSpec

# ---- app -> trainer ---------------------------------------------------------------------------


@dataclass
class Command:
    """What the app asks of the trainer; each kind is a dataclass below."""


@dataclass
class Pause(Command):
    """Stop taking steps (the run stays loaded)."""


@dataclass
class Resume(Command):
    """Take steps again."""


@dataclass
class Step(Command):
    """Take `n` steps, then stay paused."""

    n: int = 1


@dataclass
class Save(Command):
    path: str


@dataclass
class Reset(Command):
    """Start again from `spec`; keep the current run if that fails."""

    spec: RunSpec


@dataclass
class Quit(Command):
    """Save to `save` (unless None), then exit."""

    save: str | None = None


@dataclass
class SetLr(Command):
    lr: float


@dataclass
class SetEvalInterval(Command):
    interval: int


@dataclass
class SetCausal(Command):
    causal: bool


@dataclass
class StepOn(Command):
    """One optimizer step on one example: ids[:-1] -> ids[-1]."""

    ids: list[int]


@dataclass
class SetThreads(Command):
    """How many CPU threads the trainer may use: all but one while keys arrive, all when nobody types."""

    n: int


@dataclass
class TookWeights(Command):
    """The app has copied the snapshot out of shared buffer `buffer`: the trainer may write the next one."""

    buffer: int


@dataclass
class CountTokens(Command):
    text: str


@dataclass
class Memorize(Command):
    """Find the spans of `ids` copied verbatim from the training text."""

    ids: list[int]
    min_len: int


# ---- trainer -> app ---------------------------------------------------------------------------


@dataclass
class Loading:
    what: str
    done: int
    total: int


@dataclass
class Ready:
    """The run is built: everything the app needs to probe and describe it."""

    tokenizer_json: str
    model_config: dict[str, Any]  # GPTConfig.to_dict()
    # The text, its digest, its tokens, the model size, tokens per step: see worker.describe_run. Plain numbers
    # "train_tokens" and "tokens_per_step" give the Training pane its epochs (step * tokens_per_step / train_tokens).
    corpus: dict[str, Any]
    baselines: dict[str, float]  # uniform, unigram, bigram
    history: dict[str, Any]  # History.to_dict(), for a resumed run
    step: int
    spec: RunSpec  # the settings in force
    device: str
    dtype: str
    choice: str = ""  # what the trainer runs (dtype, attention, threads) and why: measured or forced


@dataclass
class Losses:
    """A batch of TrainEvent dicts since the last batch."""

    events: list[dict[str, Any]]


@dataclass
class Weights:
    step: int
    blob: bytes | None  # safetensors bytes (snapshots.blob); None: in the run's SharedBuffer


@dataclass
class SharedBuffer:
    """The run's shared memory for weight snapshots (a snapshots.SharedWeights), sent once after Ready."""

    shared: Any
    buffer: int  # which one: a reset brings another, and a late TookWeights of the old one must not free it


@dataclass
class Status:
    """Sent after every command: whether training is paused, and the settings now in force."""

    paused: bool
    step: int
    spec: RunSpec | None = None


@dataclass
class Saving:
    """A save has begun; it may take a while for a large model."""

    path: str
    step: int


@dataclass
class Saved:
    path: str
    step: int


@dataclass
class Moved:
    """A reset's new run saves to `out` from now on: `kept` holds a checkpoint (a resumed run's, a saved
    one) that the new run must not replace; a save asked for into `kept` goes to `out`."""

    out: str
    kept: str


@dataclass
class Failed:
    """The trainer hit an error; `fatal` means the process is exiting.

    `save_path` is set when a save there failed: the previous checkpoint is intact, and the
    trainer carries on (a quit that asked for the save is not carried out).
    """

    message: str
    detail: str = ""
    fatal: bool = True
    save_path: str | None = None


@dataclass
class ExampleStepped:
    """The result of one optimizer step on one example: prefix -> target."""

    target: int
    p_before: float
    p_after: float
    top_before: list[tuple[str, float]]  # (token text, probability) of the top guesses
    top_after: list[tuple[str, float]]


@dataclass
class TokenCounts:
    """How many tokens `text` is under each tokenizer kind, trained on this corpus."""

    text: str
    counts: dict[str, int]


@dataclass
class Memorized:
    """The spans [start, end) of a sample that appear verbatim in the training text."""

    ids: list[int]
    spans: list[tuple[int, int]]
    min_len: int


@dataclass
class Stopped:
    step: int


Event = (
    Loading
    | Ready
    | Losses
    | Weights
    | SharedBuffer
    | Status
    | Saving
    | Saved
    | Moved
    | Failed
    | ExampleStepped
    | TokenCounts
    | Memorized
    | Stopped
)
