"""The headless subcommands: train, complete, generate and bench."""

from __future__ import annotations

import argparse
import codecs
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from rich.table import Table

from tui_gpt.savedir import check_out
from tui_gpt.session import RunSpec, open_run
from tui_gpt.visible import visible

if TYPE_CHECKING:
    from tui_gpt.trainer import Trainer

console = Console(stderr=True)
DEFAULT_STEPS = 2000


def _bar(transient: bool = False) -> Progress:
    # A transient bar in a log file would leave its last frame behind: show none there.
    return Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[stats]}"),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=console,
        transient=transient,
        disable=transient and not console.is_terminal,
    )


def torch_threads() -> int:
    import torch

    return torch.get_num_threads()


def _open(spec: RunSpec):
    with _bar(transient=True) as bar:
        task = bar.add_task("loading", total=None, stats="")

        def progress(what: str, done: int, total: int) -> None:
            bar.update(task, description=what, completed=done, total=total)

        return open_run(spec, progress)


def cmd_train(args: argparse.Namespace) -> int:
    """Train headless; under torchrun every rank runs this, and rank 0 alone prints and saves."""
    from tui_gpt import distributed

    d = distributed.setup(args.device)
    console.quiet = not d.main
    try:
        return _train(args, d.main)
    finally:
        distributed.teardown()


def set_threads(trainer: Trainer, threads: int) -> None:
    """Apply --threads to a resumed run too (a checkpoint does not keep the thread count)."""
    want = threads or -1  # 0: measure
    if trainer.config.threads != want:
        trainer.retune(want)


def _train(args: argparse.Namespace, main: bool) -> int:
    spec = RunSpec.from_args(args)
    out = Path(args.out or args.resume or "out")
    if main:
        out = check_out(out)  # refuse before any work, not at the first save
    run = _open(spec)
    trainer = run.trainer
    set_threads(trainer, args.threads)
    steps = args.steps if args.steps or args.time else DEFAULT_STEPS
    n_params = trainer.model.num_params()
    console.print(
        f"[bold]{run.corpus.name}[/]: {len(run.corpus.documents)} documents, {run.corpus.chars:,} chars, "
        f"{len(run.data.train):,} train / {len(run.data.val):,} val tokens, {run.tokenizer.kind} vocab "
        f"{run.tokenizer.vocab_size}; model {n_params / 1e6:.2f} M params on {trainer.device} ({trainer.dtype})"
    )
    console.print(f"{trainer.choice_note}; {torch_threads()} threads")
    if trainer.dist.world > 1:
        console.print(
            f"{trainer.dist.world} ranks, global batch {trainer.tokens_per_step:,} tokens "
            f"({args.batch_size} rows x {args.grad_accum} micro-batches x {trainer.dist.world} ranks)"
        )
    if trainer.step:
        console.print(f"resuming from step {trainer.step}")
    interrupted = False
    first = trainer.step
    with _bar(transient=not main) as bar:
        task = bar.add_task("training", total=None if args.time and not args.steps else steps, stats="")
        try:
            for ev in trainer.run(steps=steps, seconds=args.time):
                stats = f"loss {ev.loss:.3f}  {ev.tokens_per_s:,.0f} tok/s  lr {ev.lr:.2e}"
                bar.update(task, completed=trainer.step - first, stats=stats)
                if ev.val_loss is not None:
                    bar.console.print(
                        f"step {ev.step:>6}: train {ev.eval_train_loss:.4f}  val {ev.val_loss:.4f}  "
                        f"lr {ev.lr:.2e}  {ev.tokens_per_s:,.0f} tok/s"
                    )
                    run.save(out)
        except KeyboardInterrupt:
            interrupted = True
    if not main:
        return 130 if interrupted else 0
    path = run.save(out)
    word = "interrupted; saved" if interrupted else "saved"
    console.print(f"{word} step {trainer.step} to {path}")
    print(path)
    return 130 if interrupted else 0


def cmd_complete(args: argparse.Namespace) -> int:
    from tui_gpt.checkpoint import load_model
    from tui_gpt.probe import predict

    model, tok, _ = load_model(Path(args.ckpt))
    ids = tok.encode(args.prefix)
    pred = predict(model, tok, ids, k=args.top_k, temperature=args.temperature, attention=False)
    out = Console()
    if pred.dropped:
        out.print(f"[yellow]prefix is {len(ids)} tokens; using its last {len(pred.ids)} (the context length)[/]")
    table = Table(title=f"next token after {args.prefix!r} (T={args.temperature:g})")
    table.add_column("rank", justify="right")
    table.add_column("token")
    table.add_column("id", justify="right")
    table.add_column("prob", justify="right")
    table.add_column("logit", justify="right")
    for i, g in enumerate(pred.guesses, 1):
        table.add_row(str(i), visible(g.text), str(g.id), f"{g.prob:.4f}", f"{g.logit:.3f}")
    out.print(table)
    return 0


def cmd_generate(args: argparse.Namespace) -> int:
    from tui_gpt.checkpoint import load_model
    from tui_gpt.probe import sample

    model, tok, _ = load_model(Path(args.ckpt))
    ids = tok.encode(args.prefix) or [tok.eot_id]
    sys.stdout.write(args.prefix)
    # An incremental decoder holds back a character until all of its bytes have arrived.
    decoder = codecs.getincrementaldecoder("utf-8")(errors="backslashreplace")
    for t in sample(model, ids, args.n, args.temperature, args.top_k, args.top_p, args.seed):
        sys.stdout.write(decoder.decode(tok.to_bytes([t])))
        sys.stdout.flush()
    sys.stdout.write(decoder.decode(b"", final=True) + "\n")
    return 0


def cmd_bench(args: argparse.Namespace) -> int:
    if args.ui:
        from tui_gpt.app.bench import bench_ui

        return bench_ui(args)
    from tui_gpt.bench import bench_train

    return bench_train(args, console)
