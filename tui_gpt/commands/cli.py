"""The `tui-gpt` command: the app by default, and headless subcommands for scripts and tests.

Kept light: torch and Textual are imported only by the command that needs them, so
`tui-gpt --help` is instant and the app paints before torch loads.
"""

from __future__ import annotations

import argparse
import math
import signal
import sys
from collections.abc import Sequence

from tui_gpt import lifeline
from tui_gpt.commands.serve import MAX_SESSIONS, PUBLIC_HELP
from tui_gpt.engine.savedir import AUTOSAVE_SECONDS
from tui_gpt.errors import TuiGptError, env_path, path_arg, report
from tui_gpt.runs import recorder
from tui_gpt.settings import (
    APP,
    CIRCUIT_STEPS,
    CIRCUITS,
    DEFAULT_STEPS,
    DIST_TIMEOUT,
    INDUCTION_TASK,
    MAX_DIST_TIMEOUT,
    MODEL_HELP,
    OPTIONS,
    SEARCH_BUDGET,
    SEARCH_SECONDS,
    STEPS,
    SWEEP_MAX_RUNS,
    THREADS_HELP,
    TOP_K,
    Option,
    add_options,
    frames_per_s,
    heads_problem,
    option_problem,
    problem,
    threads_problem,
    wait_passively,
)

SUBCOMMANDS = ("train", "complete", "generate", "heads", "circuits", "bench", "export", "serve", "runs", "sweep")
APP_DEFAULTS = ", ".join(f"--{name} {value}" for name, value in APP.items())  # what the app's parser defaults to
SPLIT_HELP = "validation split: the last 10%% of each document's tokens"
# The environment variables that name a folder: checked before any work, so a bad one leaves nothing behind.
PATH_VARIABLES = ("TUI_GPT_DATA", "TUI_GPT_CACHE", "XDG_DATA_HOME", "XDG_CACHE_HOME", "HF_HOME", "HF_HUB_CACHE")
PATH_OPTIONS = ("model",)  # settings.OPTIONS that name a file or folder: each value goes through path_arg
PROBE_SETTINGS = ("top_k", "budget", "temperature", "top_p")  # complete's and generate's, ruled in settings.RULES


def add_model_options(p: argparse.ArgumentParser, app: bool = False) -> None:
    add_options(p, app)
    for action in p._actions:
        if action.dest in PATH_OPTIONS:  # a path (or a hub name): checked as one (settings.py may not import errors)
            action.type = path_arg


def _check(p: argparse.ArgumentParser, args: argparse.Namespace, *positive: str) -> None:
    """Reject impossible option values with argparse's one-line usage error.

    Run settings follow `settings.RULES`, the rules a checkpoint's loader applies, so a run that
    starts can always be loaded back; so do the probe settings (`PROBE_SETTINGS`). `positive`
    names the other numbers that must be above 0.
    """
    if why := option_problem(lambda opt: getattr(args, opt.dest, None)):
        p.error(why)
    for name in PROBE_SETTINGS:
        value = getattr(args, name, None)
        if value is not None and (why := problem(name, value)):
            p.error(f"--{name.replace('_', '-')} {why}")
    for name in positive:
        value = getattr(args, name, None)
        if value is not None and not value > 0:  # "not >" also refuses NaN
            p.error(f"--{name.replace('_', '-')} must be positive, got {value}")
    autosave = getattr(args, "autosave", None)
    if autosave is not None and not autosave >= 0:
        p.error(f"--autosave must not be negative, got {autosave}")
    threads = getattr(args, "threads", None)
    if threads is not None and (why := threads_problem(threads)):
        p.error(f"--threads {why}")
    n_embd, n_head = getattr(args, "n_embd", None), getattr(args, "n_head", None)
    if n_embd and n_head and (why := heads_problem(n_embd, n_head, ("--n-embd", "--n-head"))):
        p.error(why)


def parser_app() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="tui-gpt",
        description="Watch a small GPT learn: train it on text and probe it while it trains.",
        epilog=(
            "subcommands (each has --help):\n"
            "  train     train headless with a progress bar, save a checkpoint\n"
            "  complete  print a checkpoint's top-k next tokens for a prefix\n"
            "  generate  stream a sample from a checkpoint\n"
            "  heads     score every attention head: previous-token and induction\n"
            "  circuits  train a 2-layer model until an induction head forms, and say when\n"
            "  bench     measure training speed (and --ui: the app's latency)\n"
            "  export    write a checkpoint as a Hugging Face GPT-2 folder\n"
            "  serve     serve the app to a web browser (needs the 'serve' extra)\n"
            "  runs      list the recorded runs (filter, sort, --json); runs rm removes entries\n"
            "  sweep     train a grid of settings x seeds, and compare them in a table\n\n"
            "TEXT is files, folders (read recursively) or a built-in corpus: fables (default), python-docs,\n"
            f"{INDUCTION_TASK} (generated: random strings repeated, the circuits experiment's text).\n"
            f"The {SPLIT_HELP.replace('%%', '%')}."
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "text", nargs="*", type=path_arg, metavar="TEXT", help="text to train on (default: the bundled fables)"
    )
    p.add_argument("--resume", type=path_arg, metavar="CKPT", help="continue a saved run")
    p.add_argument(
        "--out",
        type=path_arg,
        metavar="DIR",
        default=None,
        help="where save and quit write (default: ./tui-gpt-run, or the --resume one)",
    )
    p.add_argument(
        "--autosave",
        type=float,
        default=AUTOSAVE_SECONDS,
        metavar="SECONDS",
        help=f"also save every SECONDS of training, and when the app is killed (default {AUTOSAVE_SECONDS}; 0: off)",
    )
    add_model_options(p, app=True)  # its help says the app's own defaults (settings.APP)
    recorder.add_options(p)
    return p


def parser_train() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="tui-gpt train",
        description=f"Train a GPT headless and save a checkpoint. The {SPLIT_HELP}.",
    )
    p.add_argument(
        "text",
        nargs="*",
        type=path_arg,
        metavar="TEXT",
        help=f"files, folders or a built-in corpus (fables, python-docs, {INDUCTION_TASK}); default: fables",
    )
    p.add_argument(STEPS.flag, type=int, default=None, help=f"{STEPS.help} (default {DEFAULT_STEPS})")
    p.add_argument("--time", type=float, default=None, metavar="SECONDS", help="stop after this much wall time")
    p.add_argument(
        "--out",
        type=path_arg,
        metavar="DIR",
        default=None,
        help="checkpoint directory (default: out, or the --resume one)",
    )
    p.add_argument(
        "--resume", type=path_arg, metavar="DIR", default=None, help="continue from this checkpoint's exact step"
    )
    p.add_argument(
        "--autosave",
        type=float,
        default=AUTOSAVE_SECONDS,
        metavar="SECONDS",
        help=f"also save every SECONDS of training (default {AUTOSAVE_SECONDS}; 0: only at evaluations and the end)",
    )
    p.add_argument("--threads", type=int, default=0, help=THREADS_HELP)
    p.add_argument("--sweep", default="", help=argparse.SUPPRESS)  # the sweep that runs this train: tui-gpt sweep
    p.add_argument(
        "--dist-timeout",
        type=_dist_timeout,
        default=DIST_TIMEOUT,
        metavar="SECONDS",
        help=f"under torchrun: a peer silent this long is taken for hung; rank 0 saves and names it "
        f"(default {DIST_TIMEOUT:g}; must outlast rank 0's evaluation and save)",
    )
    add_model_options(p)
    recorder.add_options(p)
    return p


def parser_complete() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="tui-gpt complete", description="Print the top-k next tokens after a prefix.")
    p.add_argument("ckpt", metavar="CKPT", help="checkpoint directory (leave out with --model)")
    p.add_argument("prefix", nargs="?", default=None, help="the text so far")
    p.add_argument("--model", type=path_arg, metavar="PATH|NAME", default=None, help=f"instead of CKPT: {MODEL_HELP}")
    p.add_argument("--top-k", type=int, default=TOP_K, help=f"how many to list (default {TOP_K})")
    p.add_argument("--temperature", type=float, default=1.0, help="0 to 100 (default 1)")
    p.add_argument("--words", action="store_true", help="next words (or the current word's rest), not tokens")
    p.add_argument(
        "--lens",
        action="store_true",
        help="the logit lens: each layer's top-k next tokens (its residual stream through the final norm and head); "
        "with --words, each layer's next words",
    )
    p.add_argument(
        "--budget",
        type=int,
        default=SEARCH_BUDGET,
        help=f"with --words: most forward passes to search (default {SEARCH_BUDGET}; "
        f"the search also stops after {SEARCH_SECONDS:g} s)",
    )
    p.add_argument(
        "--after-word", action="store_true", help="with --words: the prefix's last word is finished; list the next"
    )
    return p


def parser_generate() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="tui-gpt generate", description="Stream a sample from a checkpoint.")
    p.add_argument("ckpt", metavar="CKPT", help="checkpoint directory (leave out with --model)")
    p.add_argument("prefix", nargs="?", default=None, help="the text to continue (default: start of a document)")
    p.add_argument("--model", type=path_arg, metavar="PATH|NAME", default=None, help=f"instead of CKPT: {MODEL_HELP}")
    p.add_argument("-n", type=int, default=200, help="tokens to generate")
    p.add_argument("--temperature", type=float, default=0.8, help="0 to 100; 0 is greedy (default 0.8)")
    p.add_argument("--top-k", type=int, default=None)
    p.add_argument("--top-p", type=float, default=None, help="nucleus sampling: above 0, at most 1")
    p.add_argument("--seed", type=int, default=None)
    return p


def parser_bench() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="tui-gpt bench",
        description="Train with evaluations and measure ms/step, tokens/s and MFU against a measured matmul peak.",
    )
    p.add_argument("--text", nargs="+", type=path_arg, default=["fables"], help="text to train on (default: fables)")
    p.add_argument("--steps", type=int, default=500)
    p.add_argument("--time", type=float, default=None, metavar="SECONDS")
    p.add_argument("--ui", action="store_true", help="benchmark the app: key latency, steps/s, first paint")
    p.add_argument("--keys", type=int, default=200, help="with --ui: keystrokes to type")
    p.add_argument(
        "--runs",
        type=int,
        default=1,
        metavar="N",
        help="with --ui: measure N times back to back; print each run, the spread and how many runs met each bar",
    )
    p.add_argument(
        "--beside",
        type=int,
        default=None,
        metavar="N",
        help="train beside N nice-19 torch jobs this bench starts, and quiet, in turn: tok/s and what was kept",
    )
    p.add_argument(
        "--nanogpt",
        type=path_arg,
        default=None,
        metavar="DIR",
        help="a checkout of karpathy/nanoGPT: run its train.py (nanoGPT's CPU recipe) side by side, in turn",
    )
    p.add_argument("--threads", type=int, default=0, help=THREADS_HELP)
    p.add_argument("--profile", action="store_true", help="also print ms/step by torch op (torch.profiler)")
    p.add_argument(
        "--seed-sentence",
        action="store_true",
        help="train until every word of the seed sentence from 'brown' on ranks in the top 5 of the next words; "
        f"print the ranks over wall time; with the app's defaults ({APP_DEFAULTS}), as the app runs",
    )
    p.add_argument("--every", type=float, default=10.0, metavar="SECONDS", help="with --seed-sentence: rank every N s")
    p.add_argument(
        "--to-loss",
        type=float,
        default=None,
        metavar="LOSS",
        help="train until the whole validation split's loss is at most LOSS (within --steps); print the wall time",
    )
    p.add_argument("--seeds", type=int, default=1, help="with --seed-sentence or --to-loss: seeds to run, from --seed")
    add_model_options(p)
    recorder.add_options(p)
    return p


def parser_export() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="tui-gpt export",
        description="Write a checkpoint as a Hugging Face GPT-2 folder that transformers loads "
        "(GPT2LMHeadModel.from_pretrained, AutoTokenizer.from_pretrained).",
    )
    p.add_argument("ckpt", type=path_arg, metavar="CKPT", help="checkpoint directory")
    p.add_argument("out", type=path_arg, metavar="OUT", help="new (or empty) folder to write")
    return p


def parser_serve() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="tui-gpt serve",
        description="Serve the app to web browsers with textual-serve (pip install 'tui-gpt[serve]'). "
        "Every other option is passed to the app, e.g. tui-gpt serve --model gpt2 my.txt",
    )
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default: localhost only)")
    p.add_argument("--public", action="store_true", help=PUBLIC_HELP)
    p.add_argument("--port", type=int, default=8000)
    p.add_argument(
        "--max-sessions",
        type=int,
        default=MAX_SESSIONS,
        metavar="N",
        help=f"browser tabs that may run at once, each its own training run (default {MAX_SESSIONS}); "
        "more are refused with 503",
    )
    return p


def parser_heads() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="tui-gpt heads",
        description="Score every attention head of a checkpoint on random tokens repeated twice: "
        "its previous-token and induction (prefix-matching) scores, one row per head.",
    )
    p.add_argument("ckpt", type=path_arg, metavar="CKPT", help="checkpoint directory")
    p.add_argument("--seed", type=int, default=0, help="seed of the random probe (default 0)")
    return p


def parser_circuits() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="tui-gpt circuits",
        description=f"Watch an induction head form: train a {CIRCUITS['n_layer']}-layer char model from scratch on "
        f"{INDUCTION_TASK} (random strings, each repeated along its line: only copying from the context predicts "
        "them), read every head as it trains, and at the end say where the phase change was: the step at which "
        "the best induction score rose and the loss on repeated tokens fell. The lab's shift+f4 runs the same.",
    )
    p.add_argument("--seed", type=int, default=0, help="seed of the weights and the batches (default 0)")
    p.add_argument(STEPS.flag, type=int, default=None, help=f"{STEPS.help} (default {CIRCUIT_STEPS})")
    p.add_argument("--time", type=float, default=None, metavar="SECONDS", help="stop after this much wall time")
    p.add_argument(
        "--head-interval",
        type=int,
        default=None,
        metavar="N",
        help=f"read every head every N steps (default {CIRCUITS['train.head_interval']})",
    )
    p.add_argument("--threads", type=int, default=0, help=THREADS_HELP)
    p.add_argument(
        "--out", type=path_arg, metavar="DIR", default=None, help="save the model here at the end (default: no save)"
    )
    return p


def parser_runs() -> argparse.ArgumentParser:
    from tui_gpt.runs.listing import SORTS
    from tui_gpt.runs.registry import STATUSES

    p = argparse.ArgumentParser(
        prog="tui-gpt runs",
        description="List the runs that train, bench, sweep and the app recorded (newest first). "
        "The registry is $TUI_GPT_DATA/runs.sqlite, else $XDG_DATA_HOME/tui-gpt/runs.sqlite, "
        "else ~/.local/share/tui-gpt/runs.sqlite.",
    )
    p.add_argument("--text", metavar="NAME", help="only runs on this text (its name, or the start of its digest)")
    p.add_argument("--status", choices=STATUSES)
    p.add_argument("--kind", choices=("app", "train", "bench", "sweep"))
    p.add_argument("--sweep", metavar="NAME", help="only this sweep's runs")
    p.add_argument(
        "--where", action="append", default=[], metavar="SETTING=VALUE", help="e.g. lr=1e-3 or n-layer=2 (repeatable)"
    )
    p.add_argument("--sort", choices=tuple(SORTS), default="started", help="best first (default: newest first)")
    p.add_argument("--limit", type=_positive, default=None, metavar="N", help="at most N runs")
    p.add_argument("--json", action="store_true", help="every field of every run, evaluations included, as JSON")
    sub = p.add_subparsers(dest="action", metavar="rm")
    rm = sub.add_parser("rm", help="remove runs from the registry", description="Remove runs from the registry.")
    rm.add_argument("ids", nargs="+", type=int, metavar="ID")
    rm.add_argument(
        "--with-checkpoints",
        action="store_true",
        help="also delete their checkpoint folders (only tui-gpt checkpoints no other run saved to)",
    )
    rm.add_argument(
        "--force",
        action="store_true",
        help="also remove entries still marked running (a process gone on another machine, or a pid reused)",
    )
    return p


def _comma_list(opt: Option):
    """--lr 3e-4,1e-3: the argparse type of a sweep's run option, each value checked by its rule."""

    def parse(text: str) -> list:
        values = []
        for item in (t.strip() for t in text.split(",")):
            try:
                value = path_arg(item) if opt.dest in PATH_OPTIONS else opt.kind(item)
            except ValueError:
                raise argparse.ArgumentTypeError(f"{item!r} is not {opt.kind.__name__}") from None
            if opt.choices and value not in opt.choices:
                raise argparse.ArgumentTypeError(f"{item!r}: choose from {', '.join(opt.choices)}")
            if why := problem(opt.field, value):
                raise argparse.ArgumentTypeError(why)
            values.append(value)
        return list(dict.fromkeys(values))

    return parse


def _dist_timeout(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not 0 < value <= MAX_DIST_TIMEOUT:  # "not" also refuses NaN
        raise argparse.ArgumentTypeError(f"must be a number of seconds above 0, at most {MAX_DIST_TIMEOUT:g}")
    return value


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a whole number, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def parser_sweep() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="tui-gpt sweep",
        description="Train every combination of the settings given as comma lists, times --seeds, each as a "
        "'tui-gpt train' process, then print mean ± std of the final val loss and bits per byte per setting. "
        "Every run is recorded (tui-gpt runs --sweep NAME); the same command again skips the runs already done.",
    )
    p.add_argument(
        "text", nargs="*", type=path_arg, metavar="TEXT", help="files, folders or a built-in corpus; default: fables"
    )
    p.add_argument("--seeds", type=_positive, default=1, metavar="N", help="seeds per setting: --seed, --seed + 1, ...")
    p.add_argument("--time", type=float, default=None, metavar="SECONDS", help="each run stops after this much time")
    p.add_argument("--jobs", type=_positive, default=None, metavar="N", help="runs at once (default: measured)")
    p.add_argument("--name", default=None, help="the sweep's name (default: from its text and settings)")
    p.add_argument(
        "--out", type=path_arg, default=None, metavar="DIR", help="checkpoints and logs (default: sweeps/NAME)"
    )
    p.add_argument(
        "--max-runs",
        type=_positive,
        default=SWEEP_MAX_RUNS,
        metavar="N",
        help=f"refuse a grid of more than N runs (default {SWEEP_MAX_RUNS})",
    )
    group = p.add_argument_group("run options (each takes a comma list: --lr 3e-4,1e-3,3e-3)")
    for opt in (*OPTIONS, STEPS):
        if opt.flag_only:
            group.add_argument(opt.flag, action="store_true", help=opt.help)
        else:
            group.add_argument(opt.flag, type=_comma_list(opt), default=None, metavar="V[,V...]", help=opt.help)
    group = p.add_argument_group("recording")
    group.add_argument("--log", type=recorder.log_kinds, default=(), metavar="KINDS", help="as train's --log")
    group.add_argument("--log-dir", type=path_arg, default=recorder.LOG_DIR, metavar="DIR", help="as train's --log-dir")
    return p


PARSERS = {
    "train": parser_train,
    "complete": parser_complete,
    "generate": parser_generate,
    "heads": parser_heads,
    "circuits": parser_circuits,
    "bench": parser_bench,
    "export": parser_export,
    "serve": parser_serve,
    "runs": parser_runs,
    "sweep": parser_sweep,
}


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    wait_passively()  # before anything loads torch: see settings.OPENMP_WAIT
    frames_per_s()  # before anything loads Textual: see settings.FRAMES_PER_S
    # Started by a parent that must take us with it (a sweep's runs): SIGTERM, which saves, when it ends.
    if not lifeline.adopted(signal.SIGTERM):
        print("tui-gpt: error: the process that started this one has ended; not starting", file=sys.stderr)
        return 2
    try:
        for name in PATH_VARIABLES:
            env_path(name)
        if argv and argv[0] in SUBCOMMANDS:
            name = argv[0]
            parser = PARSERS[name]()
            if name == "serve":  # the rest of the line is the app's: check it with the app's parser
                args, app_argv = parser.parse_known_args(argv[1:])
                app_args = parser_app().parse_args(app_argv)
                _check(parser_app(), app_args)
                args.app_argv = app_argv
                args.app_out = app_args.out or app_args.resume or "tui-gpt-run"  # what each tab's folder is named after
            else:
                args = parser.parse_args(argv[1:])
            if name != "sweep":  # its run options are lists, each value checked as it is parsed
                _check(parser, args, "steps", "time", "n", "keys", "runs", "max_sessions", "every", "seeds", "to_loss")
            if name == "circuits":  # its readings are the point: --head-interval 0 would read none
                _check(parser, args, "head_interval")
                from tui_gpt.commands.phase_watch import cmd_circuits

                return cmd_circuits(args)
            from tui_gpt.commands import subcommands

            return getattr(subcommands, f"cmd_{name}")(args)
        parser = parser_app()
        args = parser.parse_args(argv)
        _check(parser, args)
        from tui_gpt.commands.launch import run_app

        return run_app(args)
    except TuiGptError as exc:
        return report(exc)
    except KeyboardInterrupt:
        print("tui-gpt: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
