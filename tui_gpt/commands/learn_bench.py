"""How fast a run learns, in wall time: `bench --seed-sentence` and `bench --to-loss X`.

The clock starts before the text is loaded and the model built (a person waits for those too) and
stops while this module measures (the next-word searches, the whole-split losses): only what a
run does on its own counts.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace

import torch
from rich.console import Console

from tui_gpt.engine.dataset import bpb_text
from tui_gpt.engine.session import check_spec, open_run
from tui_gpt.probes.nextword import next_words
from tui_gpt.settings import SEED_SENTENCE, RunSpec

SEED_FIRST = 2  # the first word that must rank: "brown" (after "The quick"); "The" and "quick" have no clue
SEED_TOP = 5  # every such word must rank in the top SEED_TOP of the next-word view
SEED_K = 50  # ranks beyond this print as ">50"
SEED_SECONDS = 120.0  # the bar: within two minutes of wall time


class Clock:
    """Wall time since start, less the time spent inside `pause()` blocks."""

    def __init__(self) -> None:
        self.start = time.perf_counter()
        self.paused_s = 0.0

    def now(self) -> float:
        return time.perf_counter() - self.start - self.paused_s

    @contextmanager
    def pause(self) -> Iterator[None]:
        t = time.perf_counter()
        try:
            yield
        finally:
            self.paused_s += time.perf_counter() - t


def sentence_ranks(model, tokenizer, sentence: str = SEED_SENTENCE, k: int = SEED_K) -> list[tuple[str, int | None]]:
    """Each word from SEED_FIRST on, and its rank (1 = likeliest) in the next words after the words before it.

    The same search as the app's Next word pane after a space; None: not in the top k.
    """
    words = sentence.split()
    out: list[tuple[str, int | None]] = []
    for i in range(SEED_FIRST, len(words)):
        found = next_words(model, tokenizer, " ".join(words[:i]), k=k, after_word=True)
        texts = [w.text.strip() for w in found.words] if found else []
        out.append((words[i], texts.index(words[i]) + 1 if words[i] in texts else None))
    return out


def ranks_text(ranks: list[tuple[str, int | None]], k: int = SEED_K) -> str:
    return " ".join(f"{w} {r if r is not None else f'>{k}'}" for w, r in ranks)


def seed_goal(ranks: list[tuple[str, int | None]]) -> bool:
    return all(r is not None and r <= SEED_TOP for _, r in ranks)


@dataclass
class SeedResult:
    seed: int
    goal_s: float | None  # wall time when every word first ranked in the top SEED_TOP; None: not within the limit
    goal_step: int | None


def _seed_specs(args: argparse.Namespace, app: bool = False) -> list[RunSpec]:
    """The run the options describe, once per seed from --seed on (`app`: with the app's defaults)."""
    base = RunSpec.from_args(argparse.Namespace(**{**vars(args), "text": args.text}), app=app)
    check_spec(base)  # a device not here: one line, before the header
    return [replace(base, train=replace(base.train, seed=base.train.seed + i)) for i in range(args.seeds)]


def _open(spec: RunSpec, say):
    """Open the run, and say what it trains on and how (dtype, attention, threads)."""
    run = open_run(spec)
    say(f"seed {spec.train.seed}: {run.tokenizer.kind} vocab {run.tokenizer.vocab_size}; {run.trainer.choice_note}")
    return run


def seed_sentence_run(spec: RunSpec, limit_s: float, every_s: float, say) -> SeedResult:
    """Train `spec` until the seed sentence's words all rank in the top SEED_TOP, or `limit_s` of wall time."""
    clock = Clock()
    run = _open(spec, say)
    trainer = run.trainer
    result = SeedResult(spec.train.seed, None, None)
    next_check = 0.0
    for _ev in trainer.run():
        t = clock.now()
        if t < next_check and t < limit_s:
            continue
        with clock.pause():
            ranks = sentence_ranks(trainer.model, run.tokenizer)
        next_check = t + every_s
        say(f"seed {spec.train.seed}  {t:6.1f} s  step {trainer.step:>5}  {ranks_text(ranks)}")
        if seed_goal(ranks):
            result.goal_s, result.goal_step = t, trainer.step
            break
        if t >= limit_s:
            break
    return result


def bench_seed_sentence(args: argparse.Namespace, console: Console) -> int:
    specs = _seed_specs(args, app=True)  # as `tui-gpt` runs
    limit = args.time or 2 * SEED_SECONDS
    console.print(
        f'bench --seed-sentence: "{SEED_SENTENCE}", every word from "{SEED_SENTENCE.split()[SEED_FIRST]}" on '
        f"in the top {SEED_TOP} of the next words; {torch.get_num_threads()} threads, limit {limit:g} s",
        markup=False,
    )
    results = []
    for spec in specs:
        results.append(seed_sentence_run(spec, limit, args.every, lambda s: console.print(s, markup=False)))
    # The bar is SEED_SECONDS; a shorter --time stops each run sooner, so it is the bar then.
    bar = min(limit, SEED_SECONDS)
    met = [r for r in results if r.goal_s is not None and r.goal_s <= bar]
    for r in results:
        if r.goal_s is not None:
            console.print(f"seed {r.seed}: goal met at {r.goal_s:.1f} s (step {r.goal_step})", markup=False)
        else:
            console.print(f"seed {r.seed}: not met within {limit:g} s", markup=False)
    times = [r.goal_s for r in results if r.goal_s is not None]
    median = f"{statistics.median(times):.1f}" if len(times) == len(results) else "nan"
    console.print(f"goal met in {len(met)} of {len(results)} seeds within {bar:g} s", markup=False)
    print(f"bench: seed_sentence_met={len(met)}/{len(results)} median_s={median}")
    return 0


def to_loss_run(spec: RunSpec, target: float, say) -> tuple[float | None, int, float]:
    """Train until the whole validation split's loss is at most `target`.

    Returns (wall seconds when it was, or None; steps; the last whole-split loss). The whole split is
    measured (clock paused) at each evaluation whose estimate comes within 0.05 of the target.
    """
    clock = Clock()
    run = _open(spec, say)
    trainer = run.trainer
    full = float("nan")
    last = spec.train.decay_steps
    for ev in trainer.run(steps=last):
        if ev.val_loss is None:
            continue
        t = clock.now()
        if ev.val_loss <= target + 0.05 or trainer.step >= last:
            with clock.pause():
                full = trainer.split_loss("val")
            step = trainer.step
            val = f"val {ev.val_loss:.4f}{bpb_text(ev.val_bpb)}"
            whole = f"whole split {full:.4f}{bpb_text(trainer.bits_per_byte(full))}"
            say(f"seed {spec.train.seed}  {t:6.1f} s  step {step:>5}  {val}  {whole}")
            if full <= target:
                return t, trainer.step, full
    return None, trainer.step, full


def bench_to_loss(args: argparse.Namespace, console: Console) -> int:
    specs = _seed_specs(args)
    console.print(
        f"bench --to-loss {args.to_loss:g}: the whole validation split's loss, "
        f"at most {specs[0].train.decay_steps} steps",
        markup=False,
    )
    times = []
    for spec in specs:
        t, steps, full = to_loss_run(spec, args.to_loss, lambda s: console.print(s, markup=False))
        when = f"{t:.1f} s (step {steps})" if t is not None else f"not reached in {steps} steps (last {full:.4f})"
        console.print(f"seed {spec.train.seed}: loss {args.to_loss:g} at {when}", markup=False)
        times.append(t)
    reached = [t for t in times if t is not None]
    median = f"{statistics.median(reached):.1f}" if len(reached) == len(times) else "nan"
    print(f"bench: to_loss={args.to_loss:g} reached={len(reached)}/{len(times)} median_s={median}")
    return 0
