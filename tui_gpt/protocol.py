"""The messages between the app and its trainer process.

Plain dataclasses, no torch and no Textual: weights travel as safetensors bytes.
App -> trainer: `Command`. Trainer -> app: the event classes below.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class Command:
    """What the app asks of the trainer.

    name is one of: pause, resume, step, save, reset, set_lr, set_eval_interval, set_causal,
    step_on (one optimizer step on one example), token_counts, memorization, quit.
    """

    name: str
    args: dict = field(default_factory=dict)


@dataclass
class Loading:
    what: str
    done: int
    total: int


@dataclass
class Ready:
    """The run is built: everything the app needs to probe and describe it."""

    tokenizer_json: str
    model_config: dict
    corpus: dict  # name, files, chars, train_tokens, val_tokens, skipped
    baselines: dict  # uniform, unigram, bigram
    history: dict  # History.to_dict(), for a resumed run
    step: int
    spec: dict  # the RunSpec fields in force
    device: str
    dtype: str


@dataclass
class Losses:
    """A batch of TrainEvent dicts since the last batch."""

    events: list[dict]


@dataclass
class Weights:
    step: int
    blob: bytes  # safetensors.torch.save(state_dict)


@dataclass
class Status:
    paused: bool
    step: int


@dataclass
class Saved:
    path: str
    step: int


@dataclass
class Failed:
    """The trainer hit an error; `fatal` means the process is exiting."""

    message: str
    detail: str = ""
    fatal: bool = True


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
    Loading | Ready | Losses | Weights | Status | Saved | Failed | ExampleStepped | TokenCounts | Memorized | Stopped
)
