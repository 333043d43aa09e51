"""The training loop, one step at a time, yielding events that any front end can show.

The command line and the app's trainer process both drive `Trainer.run`, so there is one
loop: AdamW, linear warmup then cosine decay, gradient clipping, gradient accumulation and
periodic evaluation. Under torchrun the same loop trains a DistributedDataParallel copy.
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Iterator
from contextlib import AbstractContextManager, nullcontext
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypedDict

import torch

from tui_gpt.engine import autotune, distributed, runcheck
from tui_gpt.engine.dataset import TokenData, bits_per_byte, get_batch, windows
from tui_gpt.engine.devices import pick_device
from tui_gpt.engine.heads import LiveHeads
from tui_gpt.engine.model import GPT, GPTConfig
from tui_gpt.errors import TuiGptError
from tui_gpt.settings import TrainConfig, cores

if TYPE_CHECKING:
    from torch.nn.parallel import DistributedDataParallel

    from tui_gpt.engine.tokenizer import TextTokenizer

__all__ = ["History", "TrainConfig", "TrainEvent", "Trainer", "pick_device", "resolve_dtype"]
GOOD_EVERY = 50  # steps between copies of the last good weights, for a non-finite loss to fall back on
MAX_RESTORES = 3  # non-finite losses in a row before the run gives up


@dataclass
class TrainEvent:
    """What happened in one step; `val_loss` and `eval_train_loss` are set on evaluation steps."""

    step: int
    loss: float
    lr: float
    tokens_per_s: float
    elapsed: float
    val_loss: float | None = None
    eval_train_loss: float | None = None
    val_bpb: float | None = None  # the val loss in bits per byte of text (dataset.bits_per_byte)
    restored: int | None = None  # the loss was NaN or infinite: the weights of this step were put back
    note: str | None = None  # a line to show: the real-run check of `--dtype auto` has decided (runcheck.py)
    # Every head's scores, on the steps that measure them (#28): {"previous_token": (n_layer, n_head) nested
    # lists, "induction": the same, "icl": the repeat probe's second-half loss minus its first (nats),
    # "in_context": the val text's late-token loss minus its early-token loss (nats) or None}.
    heads: dict[str, Any] | None = None


@dataclass
class History:
    """The loss curve so far: every step's train loss, and every evaluation."""

    steps: list[int] = field(default_factory=list)
    loss: list[float] = field(default_factory=list)
    lr: list[float] = field(default_factory=list)
    eval_steps: list[int] = field(default_factory=list)
    eval_train: list[float] = field(default_factory=list)
    eval_val: list[float] = field(default_factory=list)
    changes: list[dict[str, object]] = field(
        default_factory=list
    )  # settings changed mid-run: {"step": 120, "lr": 5e-4}
    head_steps: list[int] = field(default_factory=list)  # the steps whose events carried `heads`
    head_scores: list[dict[str, Any]] = field(default_factory=list)  # those `heads` dicts, in order
    # UTF-8 bytes per token of the validation text: eval_val / ln 2 / this is bits per byte.
    val_bytes_per_token: float | None = None

    def add(self, ev: TrainEvent) -> None:
        if ev.step > 0 or ev.val_loss is None:
            self.steps.append(ev.step)
            self.loss.append(ev.loss)
            self.lr.append(ev.lr)
        if ev.val_loss is not None:
            self.eval_steps.append(ev.step)
            self.eval_train.append(ev.eval_train_loss if ev.eval_train_loss is not None else math.nan)
            self.eval_val.append(ev.val_loss)
        if ev.heads is not None:
            self.head_steps.append(ev.step)
            self.head_scores.append(ev.heads)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def best_val(self) -> tuple[int, float] | None:
        """(step, val loss) of the lowest finite val loss so far, the earliest on a tie; None before any.

        The same reading as probes.hints.best_eval, which the app applies to the curve it has received.
        """
        best: tuple[int, float] | None = None
        for step, val in zip(self.eval_steps, self.eval_val, strict=False):
            if math.isfinite(val) and (best is None or val < best[1]):
                best = (step, val)
        return best

    def improved(self) -> bool:
        """Whether the last evaluation is the best so far, strictly: when --keep best saves."""
        best = self.best_val()
        return best is not None and best[0] == self.eval_steps[-1] and best[1] == self.eval_val[-1]

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> History:
        lists = {f.name: list(d.get(f.name, [])) for f in fields(cls) if f.name != "val_bytes_per_token"}
        return cls(**lists, val_bytes_per_token=d.get("val_bytes_per_token"))

    def change(self, step: int, **settings: object) -> None:
        """Record settings changed at `step`, e.g. a new learning rate on resume."""
        self.changes.append({"step": step, **settings})


class OptimizerCopy(TypedDict):
    """An AdamW state_dict copied to the CPU: per parameter index its tensors, and the hyper-parameters."""

    state: dict[int, dict[str, torch.Tensor]]
    param_groups: list[dict[str, Any]]


Snapshot = tuple[int, dict[str, torch.Tensor], OptimizerCopy]  # (step, weights, optimizer state), on the CPU


def available_bytes(device: torch.device | str = "cpu") -> int | None:
    """Memory free for a new model on `device`, or None when it cannot be known."""
    device = torch.device(device)
    if device.type == "cuda":
        return torch.cuda.mem_get_info(device)[0]
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return None


def bf16_supported(device: torch.device) -> bool:
    if device.type == "cuda":
        return bool(torch.cuda.is_bf16_supported())
    if device.type == "cpu":
        # bf16 matmuls pay off only with native support (AVX-512 BF16 or AMX).
        try:
            # torch leaves mkldnn.is_available unannotated
            mkldnn = torch.backends.mkldnn.is_available()  # type: ignore[no-untyped-call]
            return bool(mkldnn and torch.ops.mkldnn._is_mkldnn_bf16_supported())
        except (AttributeError, RuntimeError):
            return False
    return False


def resolve_dtype(name: str, device: torch.device) -> torch.dtype:
    """A forced dtype, or for "auto" a guess from the hardware (the Trainer measures instead)."""
    if name == "float32":
        return torch.float32
    if name == "bfloat16":
        return torch.bfloat16
    return torch.bfloat16 if bf16_supported(device) else torch.float32


class Trainer:
    """Owns a model, its optimizer and the batch stream; advances them one step at a time."""

    def __init__(self, model_config: GPTConfig, config: TrainConfig, data: TokenData) -> None:
        self.config = config
        self.data = data
        self.dist = distributed.current()
        self.device = pick_device(distributed.device_name(config.device, self.dist))
        if self.device.type == "cuda" and self.device.index is None and self.dist.world > 1:
            self.device = torch.device("cuda", self.dist.local_rank)
        self.choice = self._choose(model_config)
        self.dtype = getattr(torch, self.choice.dtype)
        torch.manual_seed(config.seed)
        self.model = GPT(model_config).to(self.device)
        autotune.set_attention(self.model, self.choice.sdpa)
        self.check = self._new_check()
        self.optimizer = self.model.configure_optimizer(config.lr, config.weight_decay, (config.beta1, config.beta2))
        # Every rank draws the same global batch and trains on its own rows of it (see train_step).
        self.generator = torch.Generator().manual_seed(config.seed)
        self.step = 0
        self.elapsed = 0.0  # seconds spent training, across resumes
        self.history = History()
        self.keep_bytes_per_token()
        self._tok_rate = 0.0
        self._good: Snapshot | None = None  # (step, weights, optimizer state), on the CPU
        self._pending: Snapshot | None = None  # a copy taken before a step, good once it is
        self._restores = 0
        self._ddp: DistributedDataParallel | None = None
        self._head_tokens: TextTokenizer | None = None  # whose vocabulary the head probe draws from
        self._heads: LiveHeads | None = None  # the probe and val windows, made at the first reading

    def watch_heads(self, tokenizer: TextTokenizer) -> None:
        """Score every head every `head_interval` steps, on a repeat probe drawn from `tokenizer`'s vocabulary."""
        self._head_tokens, self._heads = tokenizer, None

    def read_heads(self) -> dict[str, Any] | None:
        """One reading of every head's scores and the in-context score (`TrainEvent.heads`); None without a
        tokenizer (`watch_heads`), a context too short for the probe, or a non-finite score.

        The probe and the val windows are made once per run, with a fixed seed, on the trainer's device;
        the heads scored in float32 and the in-context loss in the run's dtype, in eval mode, without
        gradients. The batch stream and torch's random state are untouched: a run trains the same with or
        without readings.
        """
        if self._head_tokens is None:
            return None
        if self._heads is None:
            self.data.check()
            self._heads = LiveHeads.make(self._head_tokens, self.model.config.block_size, self.data.val, self.device)
        return self._heads.read(self.model, self._autocast)

    def _heads_due(self) -> bool:
        interval = self.config.head_interval
        return interval > 0 and self.step % interval == 0 and self.dist.main

    def keep_bytes_per_token(self) -> None:
        """Record the validation text's bytes per token in the history (again after a resume loads one)."""
        bpt = self.data.val_bytes_per_token
        self.history.val_bytes_per_token = bpt if math.isfinite(bpt) and bpt > 0 else None

    def bits_per_byte(self, loss: float) -> float | None:
        """A validation loss (nats per token) in bits per byte of the validation text, if known."""
        bpt = self.history.val_bytes_per_token
        return bits_per_byte(loss, bpt) if bpt else None

    def _choose(self, mconf: GPTConfig) -> autotune.Choice:
        """Dtype, attention path and thread count: as forced by the config, else measured (and cached).

        Under torchrun rank 0 measures and every rank runs its choice; distributed.setup has
        already shared the CPU cores out among the ranks.
        """
        c = self.config
        if c.threads > 0:
            self.set_threads(c.threads)
        tune = c.threads < 0 and self.device.type == "cpu" and self.dist.world == 1
        counts = autotune.thread_counts() if tune else [torch.get_num_threads()]
        if c.dtype != "auto" and len(counts) == 1:
            return autotune.Choice(c.dtype, None, None, f"{c.dtype} (--dtype)")
        choice = None
        if self.dist.main:
            dtypes = None if c.dtype == "auto" else [c.dtype]
            attention: list[bool | None] | None = None if c.dtype == "auto" else [None]
            choice = autotune.choose(mconf, c.batch_size, self.device, dtypes, attention, counts)
            choice.note = ("auto: " if c.dtype == "auto" else f"{c.dtype} (--dtype), ") + choice.note
        choice = distributed.broadcast(choice)
        if choice is None:  # rank 0 always chooses, and every rank gets its choice
            raise TuiGptError("rank 0 sent no choice of dtype and attention")
        if tune and choice.threads:
            self.set_threads(choice.threads)
        return choice

    def _new_check(self) -> runcheck.DtypeCheck | None:
        """The real-run check of an auto choice: once per run, in one process (ranks would disagree)."""
        auto = self.config.dtype == "auto" and self.dist.world == 1
        return runcheck.DtypeCheck(self.choice) if auto and self.choice.alts else None

    def _checked(self, check: runcheck.DtypeCheck, seconds: float) -> str | None:
        """Give the run's check a step's time and run the way it asks for; its line once it has decided."""
        way = check.observe(seconds, torch.get_num_threads())
        if way is not None:
            self.dtype = getattr(torch, way[0])
            autotune.set_attention(self.model, way[1])
            if check.switches_threads:
                self.set_threads(way[2])
        if not check.done:
            return None
        result, self.check = check.result, None
        if result is None:  # gave up: the trial's choice stands
            return None
        result.note = f"auto: {result.note}"
        self.choice = result
        return result.note

    def use_threads(self, threads: int) -> None:
        """Apply a --threads setting (0: measure) to this run, a resumed one too: checkpoints do not keep it."""
        want = threads or -1
        if self.config.threads != want:
            self.retune(want)

    def retune(self, threads: int) -> None:
        """Choose again with a new `threads` setting (-1: measure); the model keeps its weights."""
        self.config.threads = threads
        self.choice = self._choose(self.model.config)
        self.dtype = getattr(torch, self.choice.dtype)
        autotune.set_attention(self.model, self.choice.sdpa)
        self.check = self._new_check()

    @property
    def choice_note(self) -> str:
        """One line: what runs (dtype, attention, threads) and why, for the bench and the Training pane."""
        return self.choice.note

    @property
    def tokens_per_step(self) -> int:
        """Tokens in one optimizer step, over all micro-batches and ranks."""
        T = min(self.model.config.block_size, len(self.data.train) - 1)
        return self.config.batch_size * self.config.grad_accum * self.dist.world * T

    def set_threads(self, n: int) -> None:
        """Train on n CPU threads from the next step on (the app lowers it while keys arrive); at most the cores."""
        torch.set_num_threads(min(max(1, int(n)), cores()))

    @property
    def model_config(self) -> GPTConfig:
        return self.model.config

    def _autocast(self) -> AbstractContextManager[object]:
        if self.dtype == torch.float32:
            return nullcontext()
        return torch.autocast(self.device.type, dtype=self.dtype)

    def lr_at(self, step: int) -> float:
        c = self.config
        min_lr = c.lr / 10 if c.min_lr is None else c.min_lr
        if step < c.warmup_steps:
            return c.lr * (step + 1) / (c.warmup_steps + 1)
        if c.schedule == "constant":
            return c.lr
        if step >= c.decay_steps:
            return min_lr
        ratio = (step - c.warmup_steps) / max(1, c.decay_steps - c.warmup_steps)
        return min_lr + 0.5 * (1.0 + math.cos(math.pi * ratio)) * (c.lr - min_lr)

    def set_lr(self, lr: float) -> None:
        """Change the peak learning rate mid-run; the schedule keeps its shape."""
        self.config.lr = lr

    def _training_model(self) -> torch.nn.Module:
        """The model to run forward and backward: a DDP wrapper of it under torchrun."""
        if self.dist.world == 1:
            return self.model
        if self._ddp is None:  # built at the first step, after any resume has loaded the weights
            from torch.nn.parallel import DistributedDataParallel

            ids = [self.device.index] if self.device.type == "cuda" else None
            self._ddp = DistributedDataParallel(self.model, device_ids=ids)
        return self._ddp

    def _update(self, micro: list[tuple[torch.Tensor, torch.Tensor]]) -> float:
        """One AdamW step on micro-batches of inputs x (B, T) and targets y (B, T).

        Gradients add up over the micro-batches (and DDP averages them over ranks), so the step
        is the one a single batch of all their rows would take. Returns the mean loss before it.
        """
        for group in self.optimizer.param_groups:
            group["lr"] = self.lr_at(self.step)
        model = self._training_model()
        model.train()
        total = torch.zeros((), device=self.device)
        for i, (x, y) in enumerate(micro):
            # DDP averages gradients over ranks once, after the last micro-batch.
            last = i == len(micro) - 1
            with nullcontext() if last or self._ddp is None else self._ddp.no_sync():
                with self._autocast():
                    _, loss, _ = model(x.to(self.device), y.to(self.device))
                (loss / len(micro)).backward()
            total += loss.detach()
        # Every collective before the optimizer step: a rank lost mid-step leaves the weights whole.
        mean = distributed.mean_across(total / len(micro))
        if self.config.grad_clip > 0:
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.config.grad_clip, foreach=True)
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        return mean.item()  # one host sync per step

    def train_step(self) -> TrainEvent:
        """One optimizer step on one random global batch; this rank trains on its rows of it."""
        t0 = time.perf_counter()
        lr = self.lr_at(self.step)
        B, A = self.config.batch_size, self.config.grad_accum
        # Micro-batch j of the global batch is rows [j*B, (j+1)*B); rank r takes j = r*A .. r*A+A-1,
        # so N ranks with A micro-batches match one process with N*A of them, or one batch of N*A*B.
        self.data.check()
        rng = self.generator.get_state(), torch.get_rng_state()
        x, y = get_batch(self.data.train, B * A * self.dist.world, self.model.config.block_size, self.generator)
        first = self.dist.rank * A
        micro = [(x[j * B : (j + 1) * B], y[j * B : (j + 1) * B]) for j in range(first, first + A)]
        if self._good is None or self.step - self._good[0] >= GOOD_EVERY:
            self._pending = self._snapshot()
        try:
            loss = self._update(micro)
        except RuntimeError as exc:
            if distributed.lost_rank(exc):
                # A lost rank fails a step before its optimizer step (see _update): rewind the batch stream
                # too, so that the weights, the step count and the random state a save writes agree.
                self.generator.set_state(rng[0])
                torch.set_rng_state(rng[1])
            raise
        restored = None
        if math.isfinite(loss):
            self._restores = 0
            if self._pending is not None:  # the weights before this step gave a finite loss: keep them
                self._good, self._pending = self._pending, None
        else:
            restored = self._restore()
        dt = time.perf_counter() - t0
        self.step += 1
        self.elapsed += dt
        rate = x.numel() / dt
        self._tok_rate = rate if self._tok_rate == 0 else 0.9 * self._tok_rate + 0.1 * rate
        note = self._checked(self.check, dt) if self.check is not None else None
        return TrainEvent(self.step, loss, lr, self._tok_rate, self.elapsed, restored=restored, note=note)

    def _snapshot(self) -> Snapshot:
        weights = {k: v.detach().to("cpu", copy=True) for k, v in self.model.state_dict().items()}
        opt = self.optimizer.state_dict()
        state = {i: {k: v.to("cpu", copy=True) for k, v in s.items()} for i, s in opt["state"].items()}
        return self.step, weights, {"state": state, "param_groups": opt["param_groups"]}

    def _restore(self) -> int:
        """Put back the last good weights and optimizer state after a NaN or infinite loss; their step."""
        self._pending = None
        self._restores += 1
        if self._good is None or self._restores > MAX_RESTORES:
            raise TuiGptError(
                f"the loss is NaN or infinite at step {self.step + 1} and stays so; lower --lr (now {self.config.lr:g})"
            )
        step, weights, opt = self._good
        self.model.load_state_dict(weights)
        # Clones: on the CPU the optimizer would adopt these very tensors and update them in place.
        state = {i: {k: v.clone() for k, v in s.items()} for i, s in opt["state"].items()}
        self.optimizer.load_state_dict({"state": state, "param_groups": [dict(g) for g in opt["param_groups"]]})
        self.optimizer.zero_grad(set_to_none=True)
        return step

    def set_causal(self, causal: bool) -> None:
        """Switch the causal mask on or off for training and evaluation (the mask experiment)."""
        self.model.config.causal = causal

    def step_on(self, ids: list[int]) -> float:
        """One optimizer step on one example: ids[:-1] predicting its last token ids[-1].

        Returns the example's loss before the step. The run's step counter is unchanged.
        """
        ids = ids[-(self.model.config.block_size + 1) :]
        x = torch.tensor([ids[:-1]], dtype=torch.long)
        y = torch.full_like(x, -1)
        y[0, -1] = ids[-1]  # only the last position is the example
        return self._update([(x, y)])

    @torch.no_grad()
    def evaluate(self, iters: int | None = None) -> dict[str, float]:
        """Mean loss over `iters` random batches of each split: the same batches at every evaluation.

        The batches come from their own generator, so evaluating never changes the training stream
        and a resumed run sees the same numbers. Drawn alike each time, two evaluations differ by
        what the model learned, not by the draw: the best val and the overfitting hint compare them
        (a fresh draw each time moved val by 2 to 3% on the bundled text, more than 10 minutes of learning).
        """
        iters = iters or self.config.eval_iters
        self.model.eval()
        out = {}
        for split in ("train", "val"):
            gen = torch.Generator().manual_seed(self.config.seed + 7919)
            losses = []
            for _ in range(iters):
                self.data.check()
                x, y = get_batch(self.data.split(split), self.config.batch_size, self.model.config.block_size, gen)
                with self._autocast():
                    _, loss, _ = self.model(x.to(self.device), y.to(self.device))
                losses.append(loss.item())
            out[split] = sum(losses) / len(losses)
        return out

    @torch.no_grad()
    def split_loss(self, split: str = "val", batch_size: int = 64) -> float:
        """Mean loss over every token of a split, in windows of block_size side by side.

        The same quantity `evaluate` samples, without its sampling noise (only the last,
        partial window is left out).
        """
        data = self.data.split(split)
        T = min(self.model.config.block_size, len(data) - 1)
        n = (len(data) - 1) // T
        self.model.eval()
        total = 0.0
        for xb, yb in windows(data, T, batch_size, self.data.check):
            with self._autocast():
                _, loss, _ = self.model(xb.to(self.device), yb.to(self.device))
            total += loss.item() * len(xb)
        return total / n

    def _eval_event(self, ev: TrainEvent | None) -> TrainEvent:
        losses = self.evaluate()
        if self.check is not None:
            self.check.evaluated()
        if ev is None:  # before the first step
            ev = TrainEvent(self.step, losses["train"], self.lr_at(self.step), 0.0, self.elapsed)
        ev.val_loss, ev.eval_train_loss = losses["val"], losses["train"]
        ev.val_bpb = self.bits_per_byte(ev.val_loss)
        return ev

    def run(self, steps: int | None = None, seconds: float | None = None) -> Iterator[TrainEvent]:
        """Train until `steps` more steps or `seconds` of wall time, whichever comes first.

        Evaluates before the first step of a fresh run, every `eval_interval` steps, and at
        the end. Reads every head's scores (`TrainEvent.heads`) every `head_interval` steps, and at
        step 0 with the evaluation before the first step. Every event is also recorded in `history`.
        """
        start = time.perf_counter()
        end_step = self.step + steps if steps is not None else None
        main = self.dist.main  # under torchrun only rank 0 evaluates
        if self.step == 0 and self.config.eval_interval > 0 and main:
            ev = self._eval_event(None)
            if self._heads_due():
                ev.heads = self.read_heads()
            self.history.add(ev)
            yield ev
        while True:
            if end_step is not None and self.step >= end_step:
                break
            if seconds is not None and time.perf_counter() - start >= seconds:
                break
            ev = self.train_step()
            last = (end_step is not None and self.step >= end_step) or (
                seconds is not None and time.perf_counter() - start >= seconds
            )
            interval = self.config.eval_interval
            if interval > 0 and (self.step % interval == 0 or last) and main:
                ev = self._eval_event(ev)
            if self._heads_due():
                ev.heads = self.read_heads()
            self.history.add(ev)
            yield ev
