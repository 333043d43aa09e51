"""`tui-gpt bench`: training speed, measured against the machine's own matmul peak."""

from __future__ import annotations

import argparse
import math
import time

import torch
from rich.console import Console

from tui_gpt.engine.dataset import bpb_text
from tui_gpt.engine.session import LoadedRun, open_run
from tui_gpt.runs.recorder import Recorder, Recording
from tui_gpt.settings import RunSpec
from tui_gpt.visible import shown


def matmul_peak(dtype: torch.dtype, device: torch.device, n: int = 1024, seconds: float = 0.5) -> float:
    """Measured FLOP/s of an n x n matmul in `dtype`: the ceiling that MFU is a fraction of."""
    a = torch.randn(n, n, device=device).to(dtype)
    b = torch.randn(n, n, device=device).to(dtype)
    for _ in range(3):
        a @ b
    best = 0.0
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        t = time.perf_counter()
        for _ in range(5):
            a @ b
        if device.type == "cuda":
            torch.cuda.synchronize()
        best = max(best, 5 * 2 * n**3 / (time.perf_counter() - t))
    return best


def flops_per_token(n_params: int, n_layer: int, n_embd: int, block_size: int) -> float:
    """Training FLOPs per token, forward and backward (PaLM appendix B, as in nanoGPT)."""
    return 6 * n_params + 12 * n_layer * n_embd * block_size


def profile_steps(trainer, steps: int = 30) -> str:
    """ms/step by torch op over `steps` training steps, as a table (self time, heaviest first)."""
    from torch.profiler import ProfilerActivity, profile

    for _ in range(3):  # warm up outside the profile
        trainer.train_step()
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        for _ in range(steps):
            trainer.train_step()
    rows = sorted(prof.key_averages(), key=lambda e: e.self_cpu_time_total, reverse=True)
    total = sum(e.self_cpu_time_total for e in rows) / 1000 / steps
    lines = [f"ms/step by op (self CPU time, {steps} steps, {total:.2f} ms/step profiled):"]
    for e in rows[:15]:
        lines.append(f"  {e.self_cpu_time_total / 1000 / steps:7.2f}  {e.count // steps:4d}x  {e.key}")
    return "\n".join(lines)


def bench_train(args: argparse.Namespace, console: Console) -> int:

    spec = RunSpec.from_args(argparse.Namespace(**{**vars(args), "text": args.text}))
    recording = Recording.from_args(args)
    recording.check()
    run = open_run(spec)
    trainer = run.trainer
    trainer.use_threads(getattr(args, "threads", 0))
    peak = matmul_peak(trainer.dtype, trainer.device)
    n_params = trainer.model.num_params()
    console.print(
        f"bench: {run.corpus.name}, {run.tokenizer.kind} vocab {run.tokenizer.vocab_size}, "
        f"{n_params / 1e6:.2f} M params, {trainer.device} {trainer.dtype}, {torch.get_num_threads()} threads, "
        f"matmul peak {peak / 1e9:.0f} GFLOP/s",
        markup=False,  # the corpus is named by its files, and the note comes from a cache file: text, not markup
    )
    console.print(trainer.choice_note, markup=False)
    if getattr(args, "profile", False):
        # On a throwaway copy of the run, so the measured run below starts from step 0 as usual.
        console.print(profile_steps(open_run(spec).trainer))
    with Recorder.start("bench", run, recording) as recorder:
        return _measure(args, run, peak, recorder, console)


def _measure(args: argparse.Namespace, run: LoadedRun, peak: float, recorder: Recorder, console: Console) -> int:
    """Train, then report ms/step, tokens/s and MFU (and record the run, with them)."""
    trainer = run.trainer
    m = trainer.model.config
    n_params = trainer.model.num_params()
    t0 = time.perf_counter()
    last_val = float("nan")
    tokens = 0
    for ev in recorder.watch(trainer.run(steps=args.steps, seconds=args.time)):
        if ev.step > 0:
            tokens += trainer.tokens_per_step
        if ev.note:
            console.print(shown(ev.note), markup=False)
        if ev.val_loss is not None:
            last_val = ev.val_loss
            console.print(
                f"step {ev.step:>6}: train {ev.eval_train_loss:.4f} val {ev.val_loss:.4f}{bpb_text(ev.val_bpb)} "
                f"{ev.tokens_per_s:,.0f} tok/s  {time.perf_counter() - t0:.1f} s"
            )
    wall = time.perf_counter() - t0
    step_time = trainer.elapsed  # training steps only, evaluations excluded
    steps = trainer.step
    tok_s = tokens / step_time if step_time else 0.0
    mfu = flops_per_token(n_params, m.n_layer, m.n_embd, m.block_size) * tok_s / peak
    full_val = trainer.split_loss("val")
    console.print(
        f"val loss over the whole split: {full_val:.4f}{bpb_text(trainer.bits_per_byte(full_val))} "
        f"({trainer.config.eval_iters}-batch estimate {last_val:.4f})"
    )
    console.print(
        f"{steps} steps in {wall:.1f} s wall ({step_time:.1f} s training): "
        f"{1000 * step_time / max(1, steps):.1f} ms/step, {tok_s:,.0f} tok/s, MFU {100 * mfu:.1f}%"
    )
    val_bpb = trainer.bits_per_byte(last_val)
    print(
        f"bench: steps={steps} tok_per_s={tok_s:.0f} val_loss={last_val:.4f} "
        f"val_bpb={val_bpb if val_bpb is not None else math.nan:.4f} mfu={mfu:.3f}"
    )
    recorder.finish("done", mfu=mfu, full_val=full_val, ms_per_step=1000 * step_time / max(1, steps))
    return 0
