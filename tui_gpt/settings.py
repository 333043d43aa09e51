"""Every setting of a run and its default, in one torch-free place.

The command line's options, the app's palette, the reproduce command, the trainer and the
checkpoint's config all derive from the dataclasses and the option table here.
"""

from __future__ import annotations

import argparse
import math
import os
import re
import shlex
import time
from collections.abc import Callable, MutableMapping
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, Self

# Corpora that ship with tui-gpt (or with Python, or generated: engine/synthetic.py); the first is the default.
INDUCTION_TASK = "task:induction"  # the circuits experiment's text, where only an induction head helps (#28)
BUILTINS = ("stories", "fables", "python-docs", INDUCTION_TASK)
ONE_FABLE = "fables/"  # "fables/01": one bundled fable alone, by its number (the overfitting experiment)


def is_builtin(source: str) -> bool:
    """A built-in corpus's name: one of BUILTINS, or one fable by number ("fables/07")."""
    number = source.removeprefix(ONE_FABLE)
    return source in BUILTINS or (number != source and len(number) == 2 and number.isdigit())


TOKENIZERS = ("char", "bpe", "word")
MODEL_SIZES = {"tiny": (2, 2, 64), "small": (4, 4, 128), "medium": (6, 6, 192)}  # n_layer, n_head, n_embd
# Parameters above which a model is "large" (GPT-2 small is 124 M): the app answers a key from the
# prompt's cache and waits for a pause before a whole forward pass, and weight snapshots come less
# often, since each one costs the app a word search that competes with training.
LARGE_PARAMS = 20_000_000
DEFAULT_STEPS = 2000  # headless `train` when neither --steps nor --time is given
SWEEP_MAX_RUNS = 100  # a larger `sweep` grid (a typo: 10,000 combinations) needs --max-runs
MODEL_HELP = "a Hugging Face GPT-2 folder, or a model id in the local HF cache (e.g. gpt2); never downloads"
# Fine-tuning a pretrained model: a small learning rate and batch, a short warmup, and a context
# short enough that a GPT-2-small step stays interactive on a CPU (1 x 128 tokens: about 1 s on 2 cores).
FINETUNE = {"train.lr": 5e-5, "train.batch_size": 1, "train.warmup_steps": 20, "block_size": 128}
# The app's defaults, where the user typed nothing: subword tokens learn the seed sentence of the
# bundled fables in about a quarter of the steps characters take (docs/learning-speed.md), and the
# app is read word by word. `train` and `bench` keep characters: nanoGPT's recipe, to compare with.
# An app run has no end, so its learning rate holds after warm-up instead of decaying by a step count
# it never reaches on purpose (docs/learning-speed.md measures both).
# Its dropout follows the size of the text (`dropout_for`), where --dropout is not given.
APP = {"tokenizer": "bpe", "train.schedule": "constant", "dropout": None}
SCHEDULES = ("cosine", "constant")
KEEPS = ("last", "best")  # --keep: the last weights only, or also the best val loss's in OUT/best (savedir.BEST)
# Probing a model (`complete`, the app's panes): how many guesses, and the next-word search's work.
TOP_K = 10
MAX_TOP_K = 1000  # a table someone reads; the word search also costs more with every word it must rank
SEARCH_BUDGET = 24  # forward passes of the next-word search; each extends up to 16 partial words
MAX_SEARCH_BUDGET = 1000  # the search's memory grows with its passes: a bound the parser enforces
# The README's first lesson: type it word by word and watch each next word climb (`bench --seed-sentence`).
SEED_SENTENCE = "The quick brown fox jumps over the lazy dog"
SEARCH_SECONDS = 10.0  # the search stops here whatever its budget (a large model on a CPU), and says so
# torchrun: how long a rank waits in a collective for the others before it takes a peer for hung,
# saves (rank 0) and says so; gloo's own default is 30 minutes. The others wait in one while rank 0
# alone evaluates and saves, so it must outlast those (`train --dist-timeout`).
DIST_TIMEOUT = 120.0
MAX_DIST_TIMEOUT = 86400.0
# The trainer reads every head's scores and the in-context score every this many steps (--head-interval; #28).
# Measured in docs/heads.md: 2.4% of the app's default model's training time (the bar: 5%); at 50, 4.9%.
HEAD_INTERVAL = 100
# Olsson et al.'s in-context score: the loss at token 500 minus the loss at token 50 of the val text.
IN_CONTEXT_LATE, IN_CONTEXT_EARLY = 500, 50


def in_context_positions(block_size: int) -> tuple[range, range] | None:
    """(late, early) positions of the in-context score for a context of `block_size`; None where none fit.

    Olsson et al.'s 500 and 50 where the context reaches position 500. A shorter one averages its last
    tenth against the positions from half a tenth to a tenth of the way in (64: 58-63 against 3-6): one
    position each, on 64 windows, moved by 0.34 nats from one sample of windows to the next, the bands
    by half that (docs/heads.md). A position counts from 0: the loss there predicts the token after it.
    """
    if block_size > IN_CONTEXT_LATE:
        return range(IN_CONTEXT_LATE, IN_CONTEXT_LATE + 1), range(IN_CONTEXT_EARLY, IN_CONTEXT_EARLY + 1)
    tenth = max(1, block_size // 10)
    late, early = range(block_size - tenth, block_size), range(tenth // 2, tenth + 1)
    return (late, early) if len(late) and late[0] > early[-1] else None


def _tokens(positions: range) -> str:
    return f"token {positions[0]}" if len(positions) == 1 else f"tokens {positions[0]}-{positions[-1]}"


def in_context_label(block_size: int) -> str:
    """The in-context score's positions, short: "500 vs 50", "58-63 vs 3-6"; "" where none fit."""
    positions = in_context_positions(block_size)
    if positions is None:
        return ""
    return " vs ".join(_tokens(p).split(" ")[1] for p in positions)


def in_context_words(block_size: int) -> str:
    """What the in-context score measures for a context of `block_size`, in words."""
    positions = in_context_positions(block_size)
    if positions is None:
        return f"no in-context score: a context of {block_size} tokens is too short"
    late, early = positions
    if len(late) == 1 and late[0] == IN_CONTEXT_LATE:
        return (
            f"in-context score: val loss at token {IN_CONTEXT_LATE} minus at token {IN_CONTEXT_EARLY} (Olsson et al.)"
        )
    return (
        f"in-context score: mean val loss at {_tokens(late)} minus at {_tokens(early)} (a context of "
        f"{block_size} is shorter than Olsson et al.'s 500 - 50)"
    )


class _Dict:
    """to_dict and from_dict for a settings dataclass; from_dict ignores keys it does not know."""

    def to_dict(self) -> dict:
        return asdict(self)  # type: ignore[call-overload]

    @classmethod
    def from_dict(cls, d: dict) -> Self:
        names = {f.name for f in fields(cls)}  # type: ignore[arg-type]
        return cls(**{k: v for k, v in d.items() if k in names})


@dataclass
class TrainConfig(_Dict):
    """How to train: the optimizer, its schedule, evaluation, and where and in what precision."""

    batch_size: int = 12  # rows per micro-batch per rank; a step sees batch_size * grad_accum * ranks
    grad_accum: int = 1  # micro-batches per optimizer step
    lr: float = 3e-3  # measured against 1e-3 (nanoGPT's) in docs/learning-speed.md: better at every budget
    min_lr: float | None = None  # None: lr / 10
    warmup_steps: int = 100
    decay_steps: int = DEFAULT_STEPS  # the cosine reaches min_lr here, then stays there
    schedule: str = "cosine"  # after warm-up: cosine to min_lr at decay_steps, or constant at lr
    weight_decay: float = 0.1
    beta1: float = 0.9
    beta2: float = 0.99
    grad_clip: float = 1.0
    eval_interval: int = 250
    eval_iters: int = 20
    head_interval: int = HEAD_INTERVAL  # every head's scores and the in-context score every N steps (0: never)
    seed: int = 1337
    dtype: str = "auto"  # auto (measured, see autotune) | float32 | bfloat16
    device: str = "auto"  # auto | cpu | cuda | cuda:N | mps (DEVICES); whether this machine has it: engine.trainer
    keep: str = "last"  # last: save the current weights; best: also the best val loss's, to OUT/best, as it improves
    # CPU threads: 0 keeps the process's count, -1 measures the best, n forces n. The machine's, not the run's.
    threads: int = field(default=0, compare=False)

    def to_dict(self) -> dict:
        # The thread count belongs to the machine and the front end, not the run: never saved.
        return {k: v for k, v in asdict(self).items() if k != "threads"}


@dataclass
class RunSpec(_Dict):
    """Everything needed to start (or resume) a run; small and picklable for the trainer process."""

    sources: list[str] = field(default_factory=list)
    tokenizer: str = "char"
    vocab_size: int | None = None  # None: the tokenizer kind's default
    n_layer: int = 4
    n_head: int = 4
    n_embd: int = 128
    block_size: int = 64
    dropout: float | None = 0.0  # None: chosen from the text's size when the run opens (`dropout_for`)
    dropout_note: str = field(default="", compare=False)  # why, when it was chosen so: "small text: ..."
    causal: bool = True  # False lets every position see the future: the mask experiment
    train: TrainConfig = field(default_factory=TrainConfig)
    resume: str | None = None
    model: str | None = None  # a Hugging Face GPT-2 folder or cached model id to fine-tune
    # The options the user typed (argparse dests): how a run was asked for, not what it is.
    given: list[str] = field(default_factory=list, compare=False)

    def __post_init__(self) -> None:
        if isinstance(self.train, dict):  # from JSON or the protocol
            self.train = TrainConfig.from_dict(self.train)

    @classmethod
    def from_args(cls, args: argparse.Namespace, app: bool = False) -> RunSpec:
        """The spec that parsed command-line options describe (see `OPTIONS`); `app`: with the app's defaults."""
        spec = cls(
            sources=list(getattr(args, "text", None) or []),
            resume=getattr(args, "resume", None),
            given=sorted(getattr(args, "given", ())),
        )
        for opt in (*OPTIONS, STEPS):
            value = getattr(args, opt.dest, None)
            if value is not None:
                opt.apply(spec, value)
        if hasattr(args, "threads"):  # headless: measure the best thread count unless one is given
            spec.train.threads = args.threads or -1
        # Fine-tuning's and the app's defaults, where the user typed nothing else (a resume keeps its own).
        defaults = FINETUNE if spec.model else APP if app and not spec.resume else {}
        for opt in OPTIONS:
            if opt.target in defaults and opt.dest not in spec.given:
                opt.apply(spec, defaults[opt.target])
        return spec


class Given(argparse.Action):
    """Store the value and note that the user typed the option: a resume applies or refuses it, never ignores it."""

    def __call__(self, parser: Any, namespace: argparse.Namespace, values: Any, option_string: Any = None) -> None:
        setattr(namespace, self.dest, self.const if self.nargs == 0 else values)
        namespace.given = {*getattr(namespace, "given", ()), self.dest}


@dataclass(frozen=True)
class Option:
    """One command-line option and the RunSpec (or RunSpec.train) field it sets."""

    flag: str
    target: str  # "n_layer", or "train.lr" for a TrainConfig field
    help: str = ""
    kind: type = int
    choices: tuple[str, ...] | None = None
    flag_only: bool = False  # a switch (--no-causal) that stores the opposite of the field

    @property
    def dest(self) -> str:
        return self.flag.removeprefix("--").replace("-", "_")

    @property
    def field(self) -> str:
        """The RunSpec or TrainConfig field's own name: its rule's key in RULES."""
        return self.target.rpartition(".")[2]

    def _owner(self, spec: RunSpec) -> tuple[Any, str]:
        owner, _, name = self.target.rpartition(".")
        return (spec.train if owner == "train" else spec), name

    def get(self, spec: RunSpec) -> Any:
        obj, name = self._owner(spec)
        return getattr(obj, name)

    def apply(self, spec: RunSpec, value: Any) -> None:
        obj, name = self._owner(spec)
        setattr(obj, name, (not value) if self.flag_only else value)

    def default(self) -> Any:
        return self.get(RunSpec())

    def add_to(self, group: Any, app: bool = False) -> None:
        """Add the option to a parser's `group`; its help names the default of that command (`app`: the app's)."""
        if self.flag_only:
            group.add_argument(self.flag, action=Given, nargs=0, const=True, default=False, help=self.help)
            return
        default = self.default()
        said = APP.get(self.target, default) if app else default  # RunSpec.from_args applies APP where not given
        shown = f" (default {said})" if said is not None else ""
        help_text = (self.help + shown).strip()
        group.add_argument(
            self.flag, type=self.kind, default=default, choices=self.choices, help=help_text, action=Given
        )


OPTIONS: tuple[Option, ...] = (
    Option("--model", "model", f"fine-tune a pretrained GPT-2: {MODEL_HELP}", str),
    Option("--tokenizer", "tokenizer", "what a token is: a character, a BPE subword or a word", str, TOKENIZERS),
    Option("--vocab-size", "vocab_size", "bpe/word vocabulary size (default 512 / 4096)"),
    Option("--n-layer", "n_layer"),
    Option("--n-head", "n_head"),
    Option("--n-embd", "n_embd"),
    Option("--block-size", "block_size", "context length in tokens; --model: 128"),
    Option("--batch-size", "train.batch_size", "rows per micro-batch (per rank under torchrun); --model: 1"),
    Option("--grad-accum", "train.grad_accum", "micro-batches per optimizer step"),
    Option("--lr", "train.lr", "peak learning rate (warmup, then cosine decay); --model: 5e-5", float),
    Option("--warmup", "train.warmup_steps", "warmup steps; --model: 20"),
    Option(
        "--schedule",
        "train.schedule",
        "after warm-up: cosine decay to lr/10 at --steps, or constant (an open-ended run)",
        str,
        SCHEDULES,
    ),
    Option("--dropout", "dropout", "the app's default: by the text's size, 0 to 0.2", float),
    Option("--no-causal", "causal", "train without the causal mask (the mask experiment)", flag_only=True),
    Option("--seed", "train.seed"),
    Option("--eval-interval", "train.eval_interval", "evaluate every N steps (0: never)"),
    Option("--eval-iters", "train.eval_iters", "batches per evaluation"),
    Option(
        "--head-interval",
        "train.head_interval",
        "score every attention head (previous-token, induction) and the in-context loss every N steps (0: never)",
    ),
    Option(
        "--dtype",
        "train.dtype",
        "auto: whichever a 2 s trial on this machine finds faster, checked on the run's own steps "
        "(cached per machine and model shape)",
        str,
        ("auto", "float32", "bfloat16"),
    ),
    Option("--device", "train.device", "auto (CUDA, then MPS, then CPU), cpu, cuda, cuda:N, mps", str),
    Option(
        "--keep",
        "train.keep",
        "last: save the current weights (default); best: also, whenever the val loss improves, its weights to "
        "OUT/best (nanoGPT's save-on-improvement; tui-gpt complete OUT/best probes them)",
        str,
        KEEPS,
    ),
)
STEPS = Option("--steps", "train.decay_steps", "optimizer steps to take")  # also where the cosine ends


# Dropout by the size of the text, in training tokens per parameter: (below this, dropout, what the text is).
# Measured in docs/learning-speed.md: the fables (0.04 tokens a parameter) overfit within a minute without
# dropout and hold with 0.2; a 1 MB text (about 0.6) learns for minutes with 0.1.
DROPOUT_BY_SIZE = ((0.2, 0.2, "small text"), (2.0, 0.1, "medium text"))


def dropout_for(train_tokens: int, params: int) -> tuple[float, str]:
    """The dropout for `train_tokens` of text and a model of `params` parameters, and why (for the Training pane)."""
    per = train_tokens / max(1, params)
    for below, dropout, what in DROPOUT_BY_SIZE:
        if per < below:
            return dropout, f"{what}, {per:.2g} tokens a parameter"
    return 0.0, f"large text, {per:.2g} tokens a parameter"


def is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


# The devices a run can train on. Others torch knows (meta, xla, ...) hold no weights or have no
# kernels for our optimizer; whether this machine has the one named is checked where torch is loaded
# (engine.trainer.pick_device), before anything is written.
DEVICES = ("auto", "cpu", "cuda", "mps")
_GPU_INDEX = re.compile(r"cuda:(0|[1-9][0-9]{0,3})")


def is_device(value: object) -> bool:
    return isinstance(value, str) and (value in DEVICES or _GPU_INDEX.fullmatch(value) is not None)


def is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


# A served tab's screen, in cells (columns, rows). A page can send any size: what it says is clamped
# into this range, from a screen the app can still lay out to one it can still draw every frame.
SCREEN_MIN = (20, 6)
SCREEN_MAX = (800, 300)


def screen_size(width: object, height: object) -> tuple[int, int] | None:
    """A browser's screen size clamped into SCREEN_MIN..SCREEN_MAX; None unless both are finite numbers."""
    if not (is_number(width) and is_number(height)):
        return None
    sizes = (int(width), int(height))  # type: ignore[call-overload]
    return (
        min(max(sizes[0], SCREEN_MIN[0]), SCREEN_MAX[0]),
        min(max(sizes[1], SCREEN_MIN[1]), SCREEN_MAX[1]),
    )


@dataclass(frozen=True)
class Rule:
    """What one setting may be. The parser refuses what a checkpoint's loader would refuse, and no more."""

    allowed: str  # "an integer in 1..65536": the end of "--batch-size must be ..."
    ok: Callable[[Any], bool]


def _ints(lo: int, hi: int = 1 << 53) -> Rule:
    shown = f"an integer >= {lo}" if hi == 1 << 53 else f"an integer in {lo}..{hi}"
    return Rule(shown, lambda v: is_int(v) and lo <= v <= hi)


def _numbers(lo: float, hi: float, *, low_open: bool = False, high_open: bool = False) -> Rule:
    left, right = "(" if low_open else "[", ")" if high_open else "]"
    shown = f"a number >= {lo:g}" if math.isinf(hi) else f"a number in {left}{lo:g}, {hi:g}{right}"

    def ok(v: Any) -> bool:
        return is_number(v) and (lo < v if low_open else lo <= v) and (v < hi if high_open else v <= hi)

    return Rule(shown, ok)


# One rule per setting, for the model (RunSpec / GPTConfig) and for training (TrainConfig). The upper
# bounds keep a hostile config.json from allocating without limit; every value the command line
# accepts, a saved checkpoint loads back.
RULES: dict[str, Rule] = {
    "vocab_size": _ints(1, 1 << 20),
    "block_size": _ints(1, 1 << 14),
    "n_positions": _ints(1, 1 << 14),  # GPT-2's position rows (a pretrained model's, or an export's)
    "n_layer": _ints(1, 512),
    "n_head": _ints(1, 1024),
    "n_embd": _ints(1, 1 << 15),
    "dropout": _numbers(0, 1, high_open=True),
    "batch_size": _ints(1, 1 << 16),
    "grad_accum": _ints(1, 1 << 16),
    "lr": _numbers(0, 10, low_open=True),
    "min_lr": Rule("null or a number in [0, 10]", lambda v: v is None or (is_number(v) and 0 <= v <= 10)),
    "warmup_steps": _ints(0),
    "decay_steps": _ints(0),
    "weight_decay": _numbers(0, math.inf),
    "beta1": _numbers(0, 1, high_open=True),
    "beta2": _numbers(0, 1, high_open=True),
    "grad_clip": _numbers(0, math.inf),
    "eval_interval": _ints(0),
    "eval_iters": _ints(1, 1 << 16),
    "head_interval": _ints(0),
    "seed": _ints(0, (1 << 63) - 1),
    "schedule": Rule("cosine or constant", lambda v: v in SCHEDULES),
    "dtype": Rule("auto, float32 or bfloat16", lambda v: v in ("auto", "float32", "bfloat16")),
    "device": Rule("auto, cpu, cuda, cuda:N or mps", lambda v: is_device(v)),
    "keep": Rule("last or best", lambda v: v in KEEPS),
    # Probing a model (complete, generate): never saved, but one rule each all the same.
    "top_k": _ints(1, MAX_TOP_K),
    "budget": _ints(1, MAX_SEARCH_BUDGET),
    "temperature": _numbers(0, 100),  # 0 is (all but) greedy; NaN showed NaN probabilities, -1 passed for 0
    "top_p": _numbers(0, 1, low_open=True),  # below 0 dropped every token: a NaN distribution to sample from
}


def problem(name: str, value: Any) -> str | None:
    """Why `value` cannot be setting `name` ("must be ..., got ..."), or None if it can (or has no rule)."""
    rule = RULES.get(name)
    if rule is None or rule.ok(value):
        return None
    shown = str(value)
    shown = shown if len(shown) <= 20 else shown[:19] + "…"  # cut, and says so: 10**23 is not 10**19
    return f"must be {rule.allowed}, got {shown!r}"


def first_problem(values: dict[str, Any], prefix: str = "") -> str | None:
    """The first setting in `values` that breaks its rule, named ("train.lr must be ..."), or None.

    With both n_embd and n_head among them, the heads must also split the channels (`heads_problem`).
    """
    for name, value in values.items():
        if why := problem(name, value):
            return f"{prefix}{name} {why}"
    if "n_embd" in values and "n_head" in values:
        return heads_problem(values["n_embd"], values["n_head"], (f"{prefix}n_embd", f"{prefix}n_head"))
    return None


def heads_problem(n_embd: int, n_head: int, names: tuple[str, str] = ("n_embd", "n_head")) -> str | None:
    """The one rule that joins two settings: each head gets an equal slice of the channels. `names` name them."""
    if n_embd % n_head:
        return f"{names[0]} {n_embd} must be divisible by {names[1]} {n_head}"
    return None


def option_problem(value_of: Callable[[Option], Any]) -> str | None:
    """The first run option whose value (`value_of(opt)`, None where not given) breaks its rule, named by its flag."""
    for opt in (*OPTIONS, STEPS):
        value = value_of(opt)
        if value is not None and not opt.flag_only and (why := problem(opt.field, value)):
            return f"{opt.flag} {why}"
    return None


def spec_problem(spec: RunSpec) -> str | None:
    """The first setting of a run that no checkpoint could hold, named by its option, or None."""
    if why := option_problem(lambda opt: opt.get(spec)):
        return why  # before the heads rule, which divides by n_head
    return heads_problem(spec.n_embd, spec.n_head, ("--n-embd", "--n-head"))


THREADS_HELP = "CPU threads to train on (default 0: all cores, or fewer where a trial finds that faster)"


def cores() -> int:
    """The CPU cores this process may run on (its affinity mask where the OS has one): the most --threads."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


# Textual paints at most TEXTUAL_FPS frames a second (its default 60), so an answer computed just after a
# frame waited up to 17 ms for the next one: the default model's key -> next tokens p95 was 41.2 ms at 60 and
# 20.0 ms at 240 (`bench --ui --keys 100`, quiet 2-core EPYC). Frames are still drawn only when something changed.
FRAMES_PER_S = ("TEXTUAL_FPS", "240")


def frames_per_s(env: MutableMapping[str, str] | None = None) -> None:
    """Let Textual paint up to FRAMES_PER_S, unless the user set TEXTUAL_FPS; before Textual is imported."""
    where: MutableMapping[str, str] = os.environ if env is None else env
    name, value = FRAMES_PER_S
    where.setdefault(name, value)


# torch's OpenMP threads (GNU libgomp) spin, by default for about 300,000 polls, while they wait for
# one another at the end of every parallel op. Beside another busy process that keeps one of them off
# its core, the other spins out its time slice instead of giving the core up, and every op waits a
# slice: 2-thread training steps of the default model ran 6 to 7 times slower beside other work,
# while sleeping waits ran them as fast as one thread does (docs/architecture.md, "A busy machine").
# On a quiet machine sleeping costs: the default model trained 24% slower (29.0 against 37.1 steps/s,
# 2-core AMD EPYC, `bench --ui`'s headless figure). So a process sleeps only where others were running
# when it started; the runtime reads the policy once, before torch loads, so this is decided at launch.
OPENMP_WAIT = ("OMP_WAIT_POLICY", "PASSIVE")
OPENMP_WAIT_KNOBS = ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT")  # a user who set either keeps their choice
LOOKS = 3  # looks at the run queue, LOOK_GAP_S apart: busy only if another process was running at every one
LOOK_GAP_S = 0.005
_openmp_set: list[str] = []  # the variables this process set itself, for children that should not inherit them


def others_running(looks: int = LOOKS) -> int:
    """Processes other than this one on a CPU at every one of `looks` looks at /proc/loadavg (0 where unreadable)."""
    seen = []
    for i in range(looks):
        try:
            running = int(Path("/proc/loadavg").read_text().split()[3].split("/")[0])
        except (OSError, ValueError, IndexError):
            return 0
        seen.append(running - 1)  # this process is running while it reads
        if i + 1 < looks:
            time.sleep(LOOK_GAP_S)
    return max(0, min(seen))


def wait_passively(env: dict[str, str] | None = None, busy: bool | None = None) -> bool:
    """Have OpenMP's threads sleep while they wait where the machine is busy (`others_running`), unless the user
    chose a policy; True if it was set.

    Must run before torch loads (the runtime reads it once); children started after inherit it.
    """
    where: MutableMapping[str, str] = os.environ if env is None else env
    if any(name in where for name in OPENMP_WAIT_KNOBS):
        return False
    if not (others_running() > 0 if busy is None else busy):
        return False
    name, value = OPENMP_WAIT
    where[name] = value
    if env is None:
        _openmp_set.append(name)
    return True


def openmp_set_here() -> tuple[str, ...]:
    """The OpenMP variables `wait_passively` set in this process (not the user's)."""
    return tuple(_openmp_set)


def threads_problem(value: int) -> str | None:
    """Why `value` cannot be --threads, or None. More threads than cores only contend (100,000 crashed torch)."""
    n = cores()
    return None if 0 <= value <= n else f"must be an integer in 0..{n} (this machine's cores; 0: all), got {value}"


def add_options(parser: argparse.ArgumentParser, app: bool = False) -> None:
    """The model and training options, named as in nanoGPT, with the defaults above (`app`: the app's, `APP`)."""
    group = parser.add_argument_group("model and training (named as in nanoGPT)")
    for opt in OPTIONS:
        opt.add_to(group, app)


def reproduce_command(spec: RunSpec) -> str:
    """The `tui-gpt train ...` line that reproduces a run.

    Settings with no command-line option that differ from their defaults (weight decay, ...)
    are listed in a trailing shell comment, so pasting the line still runs.
    """
    args: list[str] = []
    for opt in (*OPTIONS, STEPS):
        value = opt.get(spec)
        if opt.flag_only:
            args += [opt.flag] if value is False else []
        elif value is not None and not (opt.target.startswith("train.") and value == opt.default()):
            args += [opt.flag, str(value)]  # the model always, training settings where not the default
    if spec.resume:
        args += ["--resume", str(spec.resume)]
    sources = [str(s) for s in spec.sources]
    if any(s.startswith("-") for s in sources):
        args += ["--", *sources]  # a file named like an option must come after "--"
    else:
        args = sources + args
    line = " ".join(shlex.quote(a) for a in ["tui-gpt", "train", *args])
    set_by_options = {opt.target.removeprefix("train.") for opt in (*OPTIONS, STEPS)}
    defaults = TrainConfig().to_dict()
    unset = [f"{k}={v}" for k, v in spec.train.to_dict().items() if k not in set_by_options and v != defaults[k]]
    if unset:
        line += "  # not settable from the command line: " + ", ".join(unset)
    return line


# The circuits experiment (#28): a 2-layer char model on the induction task, the same for `tui-gpt circuits`
# and the lab's key. Measured in docs/learning-speed.md ("Watching an induction head form").
CIRCUITS = {
    "n_layer": 2,
    "n_head": 4,
    "n_embd": 64,
    "block_size": 64,  # the heads probe repeats strings of 4 to 31 letters: the task's lengths
    "train.batch_size": 32,
    "train.lr": 3e-3,
    "train.warmup_steps": 50,
    "train.schedule": "constant",
    "train.head_interval": 50,
    "train.eval_interval": 500,
    "train.eval_iters": 10,
    "train.dtype": "float32",  # a model this small gains nothing from bfloat16, and the trial costs seconds
}
CIRCUIT_STEPS = 3000  # `tui-gpt circuits` without --steps or --time


def circuits_spec(seed: int = 0) -> RunSpec:
    """The circuits experiment's run: the induction task's text, a 2-layer char model, fresh weights."""
    spec = RunSpec(sources=[INDUCTION_TASK], tokenizer="char", dropout=0.0)
    for target, value in CIRCUITS.items():
        owner, _, name = target.rpartition(".")
        setattr(spec.train if owner == "train" else spec, name, value)
    spec.train.seed = seed
    return spec
