"""The `tui-gpt` command: the app by default, and headless subcommands for scripts and tests.

Kept light: torch and Textual are imported only by the command that needs them, so
`tui-gpt --help` is instant and the app paints before torch loads.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from tui_gpt.errors import TuiGptError

SUBCOMMANDS = ("train", "complete", "generate", "bench")
SPLIT_HELP = "validation split: the last 10%% of each document's tokens"


def add_model_options(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("model and training (named as in nanoGPT)")
    g.add_argument("--tokenizer", choices=("char", "bpe", "word"), default="char", help="default: char")
    g.add_argument("--vocab-size", type=int, default=None, help="bpe/word vocabulary size (default 512 / 4096)")
    g.add_argument("--n-layer", type=int, default=4)
    g.add_argument("--n-head", type=int, default=4)
    g.add_argument("--n-embd", type=int, default=128)
    g.add_argument("--block-size", type=int, default=64, help="context length in tokens")
    g.add_argument("--batch-size", type=int, default=12, help="rows per micro-batch (per rank under torchrun)")
    g.add_argument("--grad-accum", type=int, default=1, help="micro-batches per optimizer step (default 1)")
    g.add_argument("--lr", type=float, default=1e-3, help="peak learning rate (warmup, then cosine decay)")
    g.add_argument("--warmup", type=int, default=100, help="warmup steps")
    g.add_argument("--dropout", type=float, default=0.0)
    g.add_argument("--no-causal", action="store_true", help="train without the causal mask (the mask experiment)")
    g.add_argument("--seed", type=int, default=1337)
    g.add_argument("--eval-interval", type=int, default=250, help="evaluate every N steps (0: never)")
    g.add_argument("--eval-iters", type=int, default=20, help="batches per evaluation")
    g.add_argument(
        "--dtype",
        choices=("auto", "float32", "bfloat16"),
        default="auto",
        help="auto: whichever a 2 s trial on this machine finds faster (cached per machine and model shape)",
    )
    g.add_argument("--device", default="auto", help="auto (CUDA, then MPS, then CPU), cpu, cuda, mps")


def _check(p: argparse.ArgumentParser, args: argparse.Namespace, *names: str) -> None:
    """Reject impossible option values with argparse's one-line usage error."""
    for name in names:
        value = getattr(args, name, None)
        if value is not None and value <= 0:
            p.error(f"--{name.replace('_', '-')} must be positive, got {value}")
    for name in NON_NEGATIVE:
        value = getattr(args, name, None)
        if value is not None and value < 0:
            p.error(f"--{name.replace('_', '-')} must not be negative, got {value}")
    if getattr(args, "n_embd", None) and getattr(args, "n_head", None) and args.n_embd % args.n_head:
        p.error(f"--n-embd {args.n_embd} must be divisible by --n-head {args.n_head}")
    if getattr(args, "dropout", None) is not None and not 0 <= args.dropout < 1:
        p.error(f"--dropout must be in [0, 1), got {args.dropout}")


POSITIVE = ("n_layer", "n_head", "n_embd", "block_size", "batch_size", "grad_accum", "lr", "eval_iters", "vocab_size")
NON_NEGATIVE = ("warmup", "eval_interval", "threads")
THREADS_HELP = "CPU threads to train on (default 0: all cores, or fewer where a trial finds that faster)"


def parser_app() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="tui-gpt",
        description="Watch a small GPT learn: train it on text and probe it while it trains.",
        epilog=(
            "subcommands (each has --help):\n"
            "  train     train headless with a progress bar, save a checkpoint\n"
            "  complete  print a checkpoint's top-k next tokens for a prefix\n"
            "  generate  stream a sample from a checkpoint\n"
            "  bench     measure training speed (and --ui: the app's latency)\n\n"
            "TEXT is files, folders (read recursively) or a built-in corpus: fables (default), python-docs.\n"
            f"The {SPLIT_HELP.replace('%%', '%')}."
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("text", nargs="*", metavar="TEXT", help="text to train on (default: the bundled fables)")
    p.add_argument("--resume", metavar="CKPT", help="continue a saved run")
    p.add_argument(
        "--out",
        metavar="DIR",
        default=None,
        help="where save and quit write (default: ./tui-gpt-run, or the --resume one)",
    )
    add_model_options(p)
    return p


def parser_train() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="tui-gpt train",
        description=f"Train a GPT headless and save a checkpoint. The {SPLIT_HELP}.",
    )
    p.add_argument(
        "text",
        nargs="*",
        metavar="TEXT",
        help="files, folders or a built-in corpus (fables, python-docs); default: fables",
    )
    p.add_argument("--steps", type=int, default=None, help="optimizer steps to take (default 2000)")
    p.add_argument("--time", type=float, default=None, metavar="SECONDS", help="stop after this much wall time")
    p.add_argument(
        "--out", metavar="DIR", default=None, help="checkpoint directory (default: out, or the --resume one)"
    )
    p.add_argument("--resume", metavar="DIR", default=None, help="continue from this checkpoint's exact step")
    p.add_argument("--threads", type=int, default=0, help=THREADS_HELP)
    add_model_options(p)
    return p


def parser_complete() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="tui-gpt complete", description="Print the top-k next tokens after a prefix.")
    p.add_argument("ckpt", metavar="CKPT", help="checkpoint directory")
    p.add_argument("prefix", help="the text so far")
    p.add_argument("--top-k", type=int, default=10)
    p.add_argument("--temperature", type=float, default=1.0)
    return p


def parser_generate() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="tui-gpt generate", description="Stream a sample from a checkpoint.")
    p.add_argument("ckpt", metavar="CKPT", help="checkpoint directory")
    p.add_argument("prefix", nargs="?", default="", help="the text to continue (default: start of a document)")
    p.add_argument("-n", type=int, default=200, help="tokens to generate")
    p.add_argument("--temperature", type=float, default=0.8, help="0 is greedy")
    p.add_argument("--top-k", type=int, default=None)
    p.add_argument("--top-p", type=float, default=None)
    p.add_argument("--seed", type=int, default=None)
    return p


def parser_bench() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="tui-gpt bench",
        description="Train with evaluations and measure ms/step, tokens/s and MFU against a measured matmul peak.",
    )
    p.add_argument("--text", nargs="+", default=["fables"], help="text to train on (default: fables)")
    p.add_argument("--steps", type=int, default=500)
    p.add_argument("--time", type=float, default=None, metavar="SECONDS")
    p.add_argument("--ui", action="store_true", help="benchmark the app: key latency, steps/s, first paint")
    p.add_argument("--keys", type=int, default=200, help="with --ui: keystrokes to type")
    p.add_argument("--threads", type=int, default=0, help=THREADS_HELP)
    p.add_argument("--profile", action="store_true", help="also print ms/step by torch op (torch.profiler)")
    add_model_options(p)
    return p


PARSERS = {
    "train": parser_train,
    "complete": parser_complete,
    "generate": parser_generate,
    "bench": parser_bench,
}


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        if argv and argv[0] in SUBCOMMANDS:
            name = argv[0]
            parser = PARSERS[name]()
            args = parser.parse_args(argv[1:])
            _check(parser, args, *POSITIVE, "steps", "time", "top_k", "n", "keys")
            from tui_gpt import commands

            return getattr(commands, f"cmd_{name}")(args)
        parser = parser_app()
        args = parser.parse_args(argv)
        _check(parser, args, *POSITIVE)
        from tui_gpt.app.run import run_app

        return run_app(args)
    except TuiGptError as exc:
        print(f"tui-gpt: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("tui-gpt: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
