"""From settings to a ready trainer: load the text, train the tokenizer, build or resume the model.

The command line, the benchmark and the app's trainer process all start runs here.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from tui_gpt.errors import TuiGptError

if TYPE_CHECKING:  # the app imports RunSpec before first paint: keep it light
    from tui_gpt.corpus import Corpus
    from tui_gpt.dataset import TokenData
    from tui_gpt.tokenizer import TextTokenizer
    from tui_gpt.trainer import Trainer

Progress = Callable[[str, int, int], None]  # (what, done, total)


@dataclass
class RunSpec:
    """Everything needed to start (or resume) a run; small and picklable for the trainer process."""

    sources: list[str] = field(default_factory=list)
    tokenizer: str = "char"
    vocab_size: int | None = None
    n_layer: int = 4
    n_head: int = 4
    n_embd: int = 128
    block_size: int = 64
    dropout: float = 0.0
    causal: bool = True
    train: dict = field(default_factory=dict)  # TrainConfig fields
    resume: str | None = None

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> RunSpec:
        train = {
            "batch_size": args.batch_size,
            "grad_accum": getattr(args, "grad_accum", 1),
            "threads": (getattr(args, "threads", None) or -1) if hasattr(args, "threads") else 0,
            "lr": args.lr,
            "warmup_steps": args.warmup,
            "eval_interval": args.eval_interval,
            "eval_iters": args.eval_iters,
            "seed": args.seed,
            "dtype": args.dtype,
            "device": args.device,
        }
        steps = getattr(args, "steps", None)
        if steps:
            train["decay_steps"] = steps
        return cls(
            sources=list(getattr(args, "text", None) or []),
            tokenizer=args.tokenizer,
            vocab_size=args.vocab_size,
            n_layer=args.n_layer,
            n_head=args.n_head,
            n_embd=args.n_embd,
            block_size=args.block_size,
            dropout=args.dropout,
            causal=not getattr(args, "no_causal", False),
            train=train,
            resume=getattr(args, "resume", None),
        )


@dataclass
class Run:
    spec: RunSpec
    corpus: Corpus
    tokenizer: TextTokenizer
    data: TokenData
    trainer: Trainer

    def corpus_info(self) -> dict:
        from tui_gpt.checkpoint import corpus_info

        return corpus_info(self.corpus, self.spec.sources)

    def save(self, out: str | Path) -> Path:
        from tui_gpt.checkpoint import save_checkpoint

        return save_checkpoint(Path(out), self.trainer, self.tokenizer, self.corpus_info())


def open_run(spec: RunSpec, progress: Progress | None = None) -> Run:
    """Load the corpus and build a trainer for `spec`, resuming from `spec.resume` if set."""
    from tui_gpt.corpus import load_corpus
    from tui_gpt.dataset import TokenData
    from tui_gpt.model import GPTConfig
    from tui_gpt.tokenizer import TextTokenizer
    from tui_gpt.trainer import TrainConfig, Trainer

    sources = spec.sources
    if spec.resume:
        from tui_gpt.checkpoint import load_trainer, read_config, resolve

        ckpt = resolve(Path(spec.resume))
        cfg = read_config(ckpt)
        if not sources:
            sources = cfg.get("corpus", {}).get("sources", [])
        corpus = load_corpus(sources)
        tokenizer = TextTokenizer.load(ckpt / "tokenizer.json")
        data = TokenData.build(corpus, tokenizer, _step(progress, "tokenizing"))
        trainer = load_trainer(ckpt, data, device=spec.train.get("device", "auto"))
        spec = RunSpec(**{**spec.__dict__, "sources": sources})
        return Run(spec, corpus, tokenizer, data, trainer)
    corpus = load_corpus(sources)
    if progress:
        progress("training tokenizer", 0, 1)
    tokenizer = TextTokenizer.train(spec.tokenizer, corpus.texts, spec.vocab_size)
    data = TokenData.build(corpus, tokenizer, _step(progress, "tokenizing"))
    mconf = GPTConfig(
        vocab_size=tokenizer.vocab_size,
        block_size=spec.block_size,
        n_layer=spec.n_layer,
        n_head=spec.n_head,
        n_embd=spec.n_embd,
        dropout=spec.dropout,
        causal=spec.causal,
    )
    if mconf.n_embd % mconf.n_head:
        raise TuiGptError(f"n_embd {mconf.n_embd} must be divisible by n_head {mconf.n_head}")
    trainer = Trainer(mconf, TrainConfig.from_dict(spec.train), data)
    return Run(spec, corpus, tokenizer, data, trainer)


def _step(progress: Progress | None, what: str) -> Callable[[int, int], None] | None:
    if progress is None:
        return None
    return lambda done, total: progress(what, done, total)
