"""The training loop, one step at a time, yielding events that any front end can show.

The command line and the app's trainer process both drive `Trainer.run`, so there is one
loop: AdamW, linear warmup then cosine decay, gradient clipping and periodic evaluation.
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Iterator
from contextlib import nullcontext
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

import torch

from tui_gpt.dataset import TokenData, get_batch, windows
from tui_gpt.errors import TuiGptError
from tui_gpt.model import GPT, GPTConfig
from tui_gpt.settings import TrainConfig

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
    restored: int | None = None  # the loss was NaN or infinite: the weights of this step were put back


@dataclass
class History:
    """The loss curve so far: every step's train loss, and every evaluation."""

    steps: list[int] = field(default_factory=list)
    loss: list[float] = field(default_factory=list)
    lr: list[float] = field(default_factory=list)
    eval_steps: list[int] = field(default_factory=list)
    eval_train: list[float] = field(default_factory=list)
    eval_val: list[float] = field(default_factory=list)
    changes: list[dict] = field(default_factory=list)  # settings changed mid-run: {"step": 120, "lr": 5e-4}

    def add(self, ev: TrainEvent) -> None:
        if ev.step > 0 or ev.val_loss is None:
            self.steps.append(ev.step)
            self.loss.append(ev.loss)
            self.lr.append(ev.lr)
        if ev.val_loss is not None:
            self.eval_steps.append(ev.step)
            self.eval_train.append(ev.eval_train_loss if ev.eval_train_loss is not None else math.nan)
            self.eval_val.append(ev.val_loss)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> History:
        return cls(**{f.name: list(d.get(f.name, [])) for f in fields(cls)})

    def change(self, step: int, **settings: object) -> None:
        """Record settings changed at `step`, e.g. a new learning rate on resume."""
        self.changes.append({"step": step, **settings})


def pick_device(name: str = "auto") -> torch.device:
    """CUDA, then Apple MPS, then CPU, unless a device is named."""
    if name != "auto":
        return torch.device(name)
    if torch.cuda.is_available():
        return torch.device("cuda")
    if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


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
        return torch.cuda.is_bf16_supported()
    if device.type == "cpu":
        # bf16 matmuls pay off only with native support (AVX-512 BF16 or AMX).
        try:
            return bool(torch.backends.mkldnn.is_available() and torch.ops.mkldnn._is_mkldnn_bf16_supported())
        except (AttributeError, RuntimeError):
            return False
    return False


def resolve_dtype(name: str, device: torch.device) -> torch.dtype:
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
        self.device = pick_device(config.device)
        self.dtype = resolve_dtype(config.dtype, self.device)
        torch.manual_seed(config.seed)
        self.model = GPT(model_config).to(self.device)
        self.optimizer = self.model.configure_optimizer(config.lr, config.weight_decay, (config.beta1, config.beta2))
        self.generator = torch.Generator().manual_seed(config.seed)
        self.step = 0
        self.elapsed = 0.0  # seconds spent training, across resumes
        self.history = History()
        self._tok_rate = 0.0
        self._good: tuple[int, dict, dict] | None = None  # (step, weights, optimizer state), on the CPU
        self._pending: tuple[int, dict, dict] | None = None  # a copy taken before a step, good once it is
        self._restores = 0

    @property
    def model_config(self) -> GPTConfig:
        return self.model.config

    def _autocast(self):
        if self.dtype == torch.float32:
            return nullcontext()
        return torch.autocast(self.device.type, dtype=self.dtype)

    def lr_at(self, step: int) -> float:
        c = self.config
        min_lr = c.lr / 10 if c.min_lr is None else c.min_lr
        if step < c.warmup_steps:
            return c.lr * (step + 1) / (c.warmup_steps + 1)
        if step >= c.decay_steps:
            return min_lr
        ratio = (step - c.warmup_steps) / max(1, c.decay_steps - c.warmup_steps)
        return min_lr + 0.5 * (1.0 + math.cos(math.pi * ratio)) * (c.lr - min_lr)

    def set_lr(self, lr: float) -> None:
        """Change the peak learning rate mid-run; the schedule keeps its shape."""
        self.config.lr = lr

    def _update(self, x: torch.Tensor, y: torch.Tensor) -> float:
        """One AdamW step on inputs x (B, T) and targets y (B, T); returns the loss before it."""
        for group in self.optimizer.param_groups:
            group["lr"] = self.lr_at(self.step)
        self.model.train()
        with self._autocast():
            _, loss, _ = self.model(x.to(self.device), y.to(self.device))
        loss.backward()
        if self.config.grad_clip > 0:
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.config.grad_clip, foreach=True)
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        return loss.item()  # also waits for the device

    def train_step(self) -> TrainEvent:
        """One optimizer step on one random batch."""
        t0 = time.perf_counter()
        lr = self.lr_at(self.step)
        x, y = get_batch(self.data.train, self.config.batch_size, self.model.config.block_size, self.generator)
        if self._good is None or self.step - self._good[0] >= GOOD_EVERY:
            self._pending = self._snapshot()
        loss = self._update(x, y)
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
        return TrainEvent(self.step, loss, lr, self._tok_rate, self.elapsed, restored=restored)

    def _snapshot(self) -> tuple[int, dict, dict]:
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
        return self._update(x, y)

    @torch.no_grad()
    def evaluate(self, iters: int | None = None) -> dict[str, float]:
        """Mean loss over `iters` random batches of each split.

        The batches come from their own generator, seeded by the step, so evaluating never
        changes the training stream and a resumed run sees the same numbers.
        """
        iters = iters or self.config.eval_iters
        self.model.eval()
        out = {}
        for split in ("train", "val"):
            gen = torch.Generator().manual_seed(self.config.seed + 7919 * (self.step + 1))
            losses = []
            for _ in range(iters):
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
        for xb, yb in windows(data, T, batch_size):
            with self._autocast():
                _, loss, _ = self.model(xb.to(self.device), yb.to(self.device))
            total += loss.item() * len(xb)
        return total / n

    def _eval_event(self, ev: TrainEvent | None) -> TrainEvent:
        losses = self.evaluate()
        if ev is None:  # before the first step
            ev = TrainEvent(self.step, losses["train"], self.lr_at(self.step), 0.0, self.elapsed)
        ev.val_loss, ev.eval_train_loss = losses["val"], losses["train"]
        return ev

    def run(self, steps: int | None = None, seconds: float | None = None) -> Iterator[TrainEvent]:
        """Train until `steps` more steps or `seconds` of wall time, whichever comes first.

        Evaluates before the first step of a fresh run, every `eval_interval` steps, and at
        the end. Every event is also recorded in `history`.
        """
        start = time.perf_counter()
        end_step = self.step + steps if steps is not None else None
        if self.step == 0 and self.config.eval_interval > 0:
            ev = self._eval_event(None)
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
            if interval > 0 and (self.step % interval == 0 or last):
                ev = self._eval_event(ev)
            self.history.add(ev)
            yield ev
