"""The headless subcommands: train, complete, generate, bench, export, serve, runs and sweep."""

from __future__ import annotations

import argparse
import codecs
import signal
import sys
from collections.abc import Callable
from contextlib import contextmanager, nullcontext, suppress
from pathlib import Path
from types import FrameType
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskProgressColumn,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.table import Table
from rich.text import Text

from tui_gpt.engine.savedir import Autosave, CheckpointLock, check_out, is_checkpoint_dir
from tui_gpt.engine.session import check_spec, open_run
from tui_gpt.errors import TuiGptError, checked_path, report
from tui_gpt.runs.recorder import Recorder, Recording
from tui_gpt.settings import DEFAULT_STEPS, SEARCH_SECONDS, RunSpec, in_context_label, in_context_words
from tui_gpt.visible import cell, printable, shown, visible

console = Console(stderr=True)


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
    # Loading counts bytes of text: a percentage says more than "31457280/104857600".
    bar = Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        TaskProgressColumn(),
        TimeElapsedColumn(),
        console=console,
        transient=True,
        disable=not console.is_terminal,
    )
    with bar:
        task = bar.add_task("loading", total=None)

        def progress(what: str, done: int, total: int) -> None:  # `what` may name a file or model: not markup
            bar.update(task, description=escape(what), completed=done, total=total)

        return open_run(spec, progress)


class _Stop(BaseException):
    """A signal asked the run to stop: save, then exit with 128 + its number."""

    def __init__(self, signum: int) -> None:
        super().__init__(signum)
        self.signum = signum


# What signal.signal takes and gives back: a function, SIG_DFL or SIG_IGN, or None (not set from Python).
_Handler = Callable[[int, FrameType | None], Any] | int | signal.Handlers | None


class _Signals:
    """SIGHUP, SIGTERM and SIGINT stop the run with a save.

    While loading, a signal stops at once. While training, the first one stops after the step in
    progress, so the saved state is a whole step; a second stops at once. A save is never interrupted.
    """

    SIGNALS = (signal.SIGHUP, signal.SIGTERM, signal.SIGINT)

    def __init__(self) -> None:
        self.mode = "load"  # load | train | save
        self.stop: int | None = None  # the first signal received
        self.old: dict[int, _Handler] = {}  # the handlers to put back

    def _handle(self, signum: int, frame: object) -> None:
        again = self.stop is not None
        self.stop = self.stop or signum
        if self.mode == "load" or (self.mode == "train" and again):
            raise _Stop(self.stop)

    def __enter__(self) -> _Signals:
        for sig in self.SIGNALS:
            self.old[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(self, *exc: object) -> None:
        for sig, old in self.old.items():
            signal.signal(sig, old)

    def finish(self) -> None:
        """The run is over (a rank is lost): no signal cuts what is left, and SIGTERM stays ignored until exit.

        torchrun sends SIGTERM to every rank once one is lost, while this one saves or after: it must
        not turn the line this rank is about to print into a death by signal.
        """
        self.mode = "save"
        self.old[signal.SIGTERM] = signal.SIG_IGN  # what __exit__ leaves in place

    @contextmanager
    def saving(self, final: bool = False):
        before, self.mode = self.mode, "save"
        try:
            yield
        finally:
            self.mode = "save" if final else before


def _say(message: str, where: Console = console, markup: bool = False) -> None:
    """Print one line; plain text unless `markup` (it names folders, and a folder may be called "o[/]")."""
    with suppress(OSError):  # the terminal is gone (SIGHUP): the save matters, the message cannot be shown
        where.print(shown(message), markup=markup)  # a folder may also be called "ESC[2J": shown escaped


def _save(run, out: Path, signals: _Signals, where: Console, final: bool = False, why: str = "") -> Path | None:
    """Save and say what was written, in one line; on failure say why in one line and carry on.

    Only rank 0 calls it. The path it returns is always one it has just written: never claim a save.
    """
    with signals.saving(final):
        try:
            path = run.save(out)
        except TuiGptError as exc:
            _say(f"[red]{escape(why + str(exc))}[/]", where, markup=True)
            return None
    size = sum(f.stat().st_size for f in path.iterdir() if f.is_file())
    _say(f"{why}saved step {run.trainer.step} to {path} ({size / 1e6:.1f} MB)", where)
    return path


def _save_best(run, out: Path, evaluated: bool, signals: _Signals, where: Console) -> None:
    """--keep best: a new best val loss's weights to OUT/best, said in one line; a failure too, and training goes on."""
    with signals.saving(False):
        try:
            path = run.save_best(out, evaluated)
        except TuiGptError as exc:
            _say(f"[red]{escape('best weights not kept: ' + str(exc))}[/]", where, markup=True)
            return
    if path is not None:
        step, loss = run.trainer.history.best_val()
        _say(f"new best val {loss:.4f} at step {step}: saved to {path}", where)


def cmd_train(args: argparse.Namespace) -> int:
    """Train headless; under torchrun every rank runs this, and rank 0 alone prints and saves."""
    from tui_gpt.engine import distributed

    d = distributed.setup(args.device, args.dist_timeout)
    console.quiet = not d.main
    if d.world == 1:
        try:
            return _open_and_train(args, d.main)
        finally:
            distributed.teardown()
    try:
        code = _open_and_train(args, d.main)
    except TuiGptError as exc:
        code = report(exc)
    except BaseException:
        distributed.teardown()
        raise
    distributed.leave(code)


def _open_and_train(args: argparse.Namespace, main: bool) -> int:
    spec = RunSpec.from_args(args)
    out = Path(args.out or args.resume or "out")
    recording = Recording.from_args(args) if main else Recording(record=False)  # rank 0 alone records
    check_spec(spec)  # a bad setting or a device not here: one line, before the folder is claimed
    if main:
        out = check_out(out)  # refuse before any work, not at the first save
        recording.check()
    # Only rank 0 of a torchrun writes, and holds the folder for the whole run.
    with CheckpointLock(out) if main else nullcontext(), _Signals() as signals:
        try:
            run = _open(spec)
        except _Stop as stop:
            _say(f"stopped by {signal.Signals(stop.signum).name} before training began; nothing to save")
            return 128 + stop.signum
        except RuntimeError as exc:  # the ranks agree on a dtype while loading
            if gone := _lost(exc, signals):
                raise TuiGptError(f"{gone} before training began; nothing to save") from None
            raise
        with Recorder.start("train", run, recording, out) as recorder:
            code = _train(args, run, out, signals, recorder, main)
            recorder.finish(Recorder.status_of(code), out if is_checkpoint_dir(out) else None)
        return code


def _lost(exc: RuntimeError, signals: _Signals) -> str | None:
    """Which rank is gone, if `exc` is a collective failing for that; this rank then saves and exits."""
    from tui_gpt.engine import distributed

    gone = distributed.lost_rank(exc)
    if gone:
        signals.finish()
    return gone


def _save_lost(run, out: Path, gone: str, autosave: Autosave, main: bool) -> TuiGptError:
    """The one line for a run whose peer is gone, once rank 0 has saved its own copy of the weights.

    They are the last whole step's (trainer.train_step), the same on every rank under DDP, and a
    save needs no collective, so the steps since the last save are kept.
    """
    step = run.trainer.step
    if not main:
        return TuiGptError(f"{gone}; only rank 0 saves, so this rank stops without saving")
    if not autosave.unsaved(step):
        return TuiGptError(f"{gone}; step {step} is saved in {out}")
    try:
        path = run.save(out)  # no signal interrupts it: see _Signals.finish
    except TuiGptError as exc:
        return TuiGptError(f"{gone}; {exc}")
    return TuiGptError(f"{gone}; saved step {step} to {path}")


def _describe(args: argparse.Namespace, run) -> None:
    """Say what is about to train: the text, the model, where and how, and what a resume carries on from."""
    trainer = run.trainer
    n_params = trainer.model.num_params()
    # File, folder and model names, and the tuning cache's note, are text: escaped, never read as markup.
    name = escape(shown(run.corpus.name))
    console.print(
        f"[bold]{name}[/]: {len(run.corpus.documents)} documents, {run.corpus.chars:,} chars, "
        f"{len(run.data.train):,} train / {len(run.data.val):,} val tokens, {run.tokenizer.kind} vocab "
        f"{run.tokenizer.vocab_size}; model {n_params / 1e6:.2f} M params on {trainer.device} ({trainer.dtype})"
    )
    if run.memory:
        console.print(shown(f"{run.spec.model}: {run.memory}"), markup=False)
    console.print(f"{trainer.choice_note}; {torch_threads()} threads", markup=False)
    if trainer.config.head_interval > 0:
        every = trainer.config.head_interval
        console.print(f"heads read every {every} steps; {in_context_words(trainer.model.config.block_size)}")
    if trainer.dist.world > 1:
        console.print(
            f"{trainer.dist.world} ranks, global batch {trainer.tokens_per_step:,} tokens "
            f"({args.batch_size} rows x {args.grad_accum} micro-batches x {trainer.dist.world} ranks)"
        )
    if trainer.step:
        text = ", ".join(run.spec.sources) or "fables"
        console.print(shown(f"resuming from step {trainer.step} of {args.resume}, training on {text}"), markup=False)
        changes = trainer.history.changes
        if changes and changes[-1].get("step") == trainer.step:
            applied = ", ".join(f"{k} {v}" for k, v in changes[-1].items() if k != "step")
            console.print(shown(f"applied from the command line: {applied}"), markup=False)


def heads_line(step: int, heads: dict, block_size: int) -> str:
    """One line of a head reading (TrainEvent.heads): the best heads, the probe's icl, the in-context score."""
    from tui_gpt.probes.phase import best_head

    li, hi, ind = best_head(heads["induction"])
    lp, hp, prev = best_head(heads["previous_token"])
    line = f"heads step {step}: best induction L{li}.H{hi} {ind:.2f}, prev-token L{lp}.H{hp} {prev:.2f}, "
    line += f"icl {heads['icl']:+.2f} nats"
    if heads.get("in_context") is not None:
        line += f", in-context ({in_context_label(block_size)}) {heads['in_context']:+.2f} nats"
    return line


def _show_event(ev, out: Console, block_size: int = 0) -> None:
    """The lines a training step has to show: an auto-dtype decision, a restore, an evaluation, a head reading."""
    from tui_gpt.engine.dataset import bpb_text

    if ev.note:
        out.print(shown(ev.note), markup=False)  # the check's ways may come from a cache file: text, not markup
    if ev.restored is not None:
        out.print(f"[yellow]step {ev.step}: loss {ev.loss}; restored the weights of step {ev.restored}[/]")
    if ev.val_loss is not None:
        out.print(
            f"step {ev.step:>6}: train {ev.eval_train_loss:.4f}  val {ev.val_loss:.4f}{bpb_text(ev.val_bpb)}  "
            f"lr {ev.lr:.2e}  {ev.tokens_per_s:,.0f} tok/s"
        )
    if ev.heads is not None:
        out.print(heads_line(ev.step, ev.heads, block_size), markup=False)


def _train(args: argparse.Namespace, run, out: Path, signals: _Signals, recorder: Recorder, main: bool = True) -> int:
    from tui_gpt.engine.tokencache import Cut

    trainer = run.trainer
    trainer.use_threads(args.threads)
    steps = args.steps if args.steps or args.time else DEFAULT_STEPS
    _describe(args, run)
    first = trainer.step
    autosave = Autosave(args.autosave or 0)
    cut: Cut | None = None
    signals.mode = "train"
    with _bar(transient=not main) as bar:
        task = bar.add_task("training", total=None if args.time and not args.steps else steps, stats="")
        try:
            for ev in recorder.watch(trainer.run(steps=steps, seconds=args.time)):
                stats = f"loss {ev.loss:.3f}  {ev.tokens_per_s:,.0f} tok/s  lr {ev.lr:.2e}"
                bar.update(task, completed=trainer.step - first, stats=stats)
                _show_event(ev, bar.console, trainer.model.config.block_size)
                if main and (ev.val_loss is not None or autosave.due(trainer.step)):
                    autosave.saved(trainer.step if _save(run, out, signals, bar.console) else None)
                if main:
                    _save_best(run, out, ev.val_loss is not None, signals, bar.console)
                if signals.stop:
                    break
        except _Stop:
            pass  # a second signal: stop in the middle of the step
        except Cut as exc:  # the text is gone from under the run, not what it learned: save that
            cut = exc
        except RuntimeError as exc:
            if not (gone := _lost(exc, signals)):
                raise
            raise _save_lost(run, out, gone, autosave, main) from None
        stopped = signals.stop
        code = 1 if cut is not None else 128 + stopped if stopped is not None else 0
        if not main:
            return code
        why = f"stopped by {signal.Signals(stopped).name}; " if stopped is not None else ""
        if cut is not None:
            why = f"{escape(str(cut))}; "
        # The last save, before the bar is drawn for the last time; unless the last step is saved already.
        path: Path | None
        if not autosave.unsaved(trainer.step):
            path = out
            if why:
                _say(f"{why}step {trainer.step} is saved in {out}", bar.console)
        else:
            path = _save(run, out, signals, bar.console, final=True, why=why)
    if path is None:
        return 1
    with suppress(OSError):
        print(_for_stdout(path))
    return code


def _for_stdout(path: object) -> str:
    """A path for the last line of stdout: as it is for a script, control characters shown on a terminal."""
    return shown(path) if sys.stdout.isatty() else str(path)


def _load_model(args: argparse.Namespace):
    """The model and tokenizer to probe: --model (then CKPT is the prefix) or the checkpoint CKPT."""
    if args.model:
        from tui_gpt.engine.hf import open_pretrained

        if args.prefix is not None:
            raise TuiGptError("with --model, give only the prefix (no CKPT)")
        args.prefix = args.ckpt
        return open_pretrained(args.model)[:2]
    from tui_gpt.engine.checkpoint import load_model

    return load_model(checked_path(args.ckpt, "CKPT"))[:2]  # not checked by argparse: it may be --model's prefix


def cmd_complete(args: argparse.Namespace) -> int:
    from tui_gpt.probes.predict import predict

    model, tok = _load_model(args)
    if args.prefix is None:
        raise TuiGptError("give the prefix to complete after CKPT")
    if args.words and args.lens:
        return _complete_lens_words(model, tok, args)
    if args.words:
        return _complete_words(model, tok, args)
    if args.lens:
        return _complete_lens(model, tok, args)
    ids = tok.encode(args.prefix)
    pred = predict(model, tok, ids, k=args.top_k, temperature=args.temperature, attention=False)
    out = Console()
    if pred.dropped:
        out.print(f"[yellow]prefix is {len(ids)} tokens; using its last {len(pred.ids)} (the context length)[/]")
    table = Table(title=f"next token after {escape(repr(args.prefix))} (T={args.temperature:g})")
    table.add_column("rank", justify="right")
    table.add_column("token")
    table.add_column("id", justify="right")
    table.add_column("prob", justify="right")
    table.add_column("logit", justify="right")
    for i, g in enumerate(pred.guesses, 1):
        table.add_row(str(i), cell(g.text), str(g.id), f"{g.prob:.4f}", f"{g.logit:.3f}")
    out.print(table)
    return 0


def _complete_lens(model, tok, args: argparse.Namespace) -> int:
    from tui_gpt.probes.logit_lens import layer_name, logit_lens

    ids = tok.encode(args.prefix)
    lens = logit_lens(model, tok, ids, k=args.top_k)
    out = Console()
    if lens.dropped:
        out.print(f"[yellow]prefix is {len(ids)} tokens; using its last {len(lens.ids)} (the context length)[/]")
    final = visible(tok.token_texts[lens.final_id])
    table = Table(
        title=f"logit lens: each layer's next token after {escape(repr(args.prefix))}",
        caption=f"p final: each layer's probability of the model's own top token, {escape(repr(final))}",
    )
    table.add_column("layer")
    for i in range(1, len(lens.rows[0].guesses) + 1):
        table.add_column(f"top {i}")
    table.add_column("p final", justify="right")
    for row in lens.rows:
        cells = [Text.assemble(visible(g.text), (f" {g.prob:.3f}", "dim")) for g in row.guesses]
        table.add_row(layer_name(row.layer), *cells, f"{row.final_prob:.3f}")
    out.print(table)
    return 0


def _complete_lens_words(model, tok, args: argparse.Namespace) -> int:
    from tui_gpt.probes.logit_lens import layer_name, lens_words

    lens = lens_words(model, tok, args.prefix, k=args.top_k, after_word=args.after_word, budget=args.budget)
    assert lens is not None  # never cancelled here
    out = Console()
    last = lens.rows[-1]
    what = f"rest of the word {escape(repr(visible(last.typed)))}" if last.typed.strip() else "next word"
    final = lens.final
    table = Table(
        title=f"logit lens in words: each layer's {what} after {escape(repr(args.prefix))}",
        caption="p final: each layer's probability of the model's own top word"
        + (f", {escape(repr(visible(final)))}" if final is not None else "")
        + "; < p: below that layer's last word shown",
    )
    table.add_column("layer")
    for i in range(1, args.top_k + 1):
        table.add_column(f"top {i}")
    table.add_column("other", justify="right")
    table.add_column("p final", justify="right")
    for layer, row in enumerate(lens.rows):
        cells = [Text.assemble(visible(w.text), (f" {w.prob:.3f}", "dim")) for w in row.words]
        cells += [Text("")] * (args.top_k - len(cells))
        p = lens.final_prob(layer)
        shown = f"{p:.3f}" if p is not None else f"< {row.words[-1].prob:.3f}" if row.words else ""
        table.add_row(layer_name(layer) + (" *" if row.cut else ""), *cells, f"{row.other:.3f}", shown)
    out.print(table)
    cut = [layer_name(i) for i, row in enumerate(lens.rows) if row.cut]
    if cut:
        out.print(
            f"[yellow]* the search was cut at {', '.join(cut)} (--budget {args.budget}, or the shared "
            f"{SEARCH_SECONDS:g} s): a word outside its list may still beat the last one shown[/]"
        )
    return 0


def _complete_words(model, tok, args: argparse.Namespace) -> int:
    from tui_gpt.probes.nextword import CHILDREN, next_words

    res = next_words(
        model,
        tok,
        args.prefix,
        k=args.top_k,
        temperature=args.temperature,
        after_word=args.after_word,
        budget=args.budget,
        seconds=SEARCH_SECONDS,
    )
    assert res is not None  # never cancelled here
    out = Console()
    what = f"rest of the word {escape(repr(visible(res.typed)))}" if res.typed.strip() else "next word"
    table = Table(title=f"{what} after {escape(repr(args.prefix))} (T={args.temperature:g})")
    table.add_column("rank", justify="right")
    table.add_column("word")
    table.add_column("prob", justify="right")
    table.add_column("-log p", justify="right")
    table.add_column("tokens", justify="right")
    for i, w in enumerate(res.words, 1):
        table.add_row(str(i), cell(w.text), f"{w.prob:.4f}", f"{w.nll:.3f}", str(w.tokens))
    table.add_row("", "[dim]other[/]", f"{res.other:.4f}", "", "")
    out.print(table)
    if res.cut:
        why = {
            "budget": f"after {res.forwards} forward passes (--budget {args.budget})",
            "time": f"at its {SEARCH_SECONDS:g} s time limit, after {res.forwards} forward passes",
            "bounds": f"by its bounds (the longest word it follows, {CHILDREN} continuations per partial word)",
        }[res.cut_by]
        out.print(f"[yellow]search cut {why}: a word outside this list may still beat the last one shown[/]")
    return 0


def cmd_generate(args: argparse.Namespace) -> int:
    from tui_gpt.probes.predict import sample

    model, tok = _load_model(args)
    args.prefix = args.prefix or ""
    ids = tok.encode(args.prefix) or [tok.eot_id]
    # A terminal gets the text with its control characters shown (an escape in a sample never clears the
    # screen); a pipe gets it as it is.
    shows = printable if sys.stdout.isatty() else str
    sys.stdout.write(shows(args.prefix))
    # An incremental decoder holds back a character until all of its bytes have arrived.
    decoder = codecs.getincrementaldecoder("utf-8")(errors="backslashreplace")
    for t in sample(model, ids, args.n, args.temperature, args.top_k, args.top_p, args.seed):
        sys.stdout.write(shows(decoder.decode(tok.to_bytes([t]))))
        sys.stdout.flush()
    sys.stdout.write(shows(decoder.decode(b"", final=True)) + "\n")
    return 0


def cmd_heads(args: argparse.Namespace) -> int:
    from tui_gpt.engine.checkpoint import load_model
    from tui_gpt.engine.heads import head_scores, make_probe, periods

    model, tok, _ = load_model(Path(args.ckpt))
    block = model.config.block_size
    try:
        probe = make_probe(tok, block, seed=args.seed)
    except ValueError as exc:
        raise TuiGptError(str(exc)) from None
    scores = head_scores(model, probe)
    out = Console()
    lengths = ", ".join(map(str, periods(block)))
    table = Table(
        title="attention heads on random tokens repeated twice",
        caption=f"repeat lengths {lengths}, {len(probe.batches[0][1])} sequences each (seed {args.seed})",
    )
    for name in ("layer", "head", "previous-token score", "induction score"):
        table.add_column(name, justify="right")
    for layer in range(model.config.n_layer):
        for head in range(model.config.n_head):
            prev, ind = scores.previous_token[layer, head], scores.induction[layer, head]
            table.add_row(str(layer + 1), str(head + 1), f"{prev:.3f}", f"{ind:.3f}")
    out.print(table)
    layer, head, best = scores.best_induction()
    out.print(
        f"best induction head: layer {layer} head {head} ({best:.3f}) · in-context score {scores.icl:+.3f} nats "
        "(loss on the second repeat minus the first; negative: it copies)"
    )
    return 0


def cmd_bench(args: argparse.Namespace) -> int:
    if args.ui:
        from tui_gpt.commands.ui_bench import bench_ui

        return bench_ui(args)
    if args.seed_sentence or args.to_loss is not None:
        from tui_gpt.commands import learn_bench

        if args.seed_sentence:
            return learn_bench.bench_seed_sentence(args, console)
        return learn_bench.bench_to_loss(args, console)
    from tui_gpt.commands.train_bench import bench_train

    return bench_train(args, console)


def cmd_export(args: argparse.Namespace) -> int:
    from tui_gpt.engine.hf import export

    out = export(args.ckpt, args.out)
    console.print(shown(f"exported {args.ckpt} as a Hugging Face GPT-2 folder: {out}"), markup=False)
    print(_for_stdout(out))
    return 0


def cmd_serve(args: argparse.Namespace) -> int:
    from tui_gpt.commands.serve import serve

    return serve(args.host, args.port, args.app_argv, args.app_out, args.max_sessions, args.public)


def cmd_runs(args: argparse.Namespace) -> int:
    from tui_gpt.runs.listing import cmd_runs as runs

    return runs(args)


def cmd_sweep(args: argparse.Namespace) -> int:
    from tui_gpt.runs.sweep import sweep

    return sweep(args)
