"""tui-gpt against nanoGPT on nanoGPT's CPU recipe, side by side on this machine, in one run.

    python benchmarks/vs_nanogpt.py NANOGPT_DIR tinyshakespeare.txt [--seeds 3] [--steps 1200]

For each seed, in turn: nanoGPT's CPU recipe (character level, 4 x 128, block 64, batch 12, 2,000
iterations, fp32), then `tui-gpt bench --to-loss` aiming at nanoGPT's final loss (the mean over the
seeds of its whole validation split, as tui-gpt measures it: windows of 64 side by side). Taking
turns puts any load on the machine on both alike. Prints both wall times and their ratio.

NANOGPT_DIR is a checkout of karpathy/nanoGPT; its files are not changed (a seeded copy of
train.py runs from a temporary folder, and the data goes to a temporary folder too).
"""

from __future__ import annotations

import argparse
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

RECIPE = [
    "--device=cpu",
    "--compile=False",
    "--eval_iters=20",
    "--log_interval=250",
    "--block_size=64",
    "--batch_size=12",
    "--n_layer=4",
    "--n_head=4",
    "--n_embd=128",
    "--max_iters=2000",
    "--lr_decay_iters=2000",
    "--dropout=0.0",
    "--always_save_checkpoint=True",
]

FULL_VAL = """
import sys, numpy as np, torch
from model import GPT, GPTConfig
ck = torch.load(sys.argv[1], map_location="cpu", weights_only=False)
m = GPT(GPTConfig(**ck["model_args"]))
m.load_state_dict({k.removeprefix("_orig_mod."): v for k, v in ck["model"].items()})
m.eval()
d = torch.from_numpy(np.fromfile(sys.argv[2], dtype=np.uint16).astype(np.int64))
T = ck["model_args"]["block_size"]
n = (len(d) - 1) // T
x, y = d[: n * T].view(n, T), d[1 : n * T + 1].view(n, T)
total = 0.0
with torch.no_grad():
    for i in range(0, n, 64):
        _, loss = m(x[i : i + 64], y[i : i + 64])
        total += loss.item() * len(x[i : i + 64])
print(total / n)
"""


def prepare(text: Path, work: Path) -> Path:
    """nanoGPT's shakespeare_char prepare.py, offline (the same as `bench --beside` prepares)."""
    from tui_gpt.commands.beside_bench import shakespeare_char_data

    return shakespeare_char_data(text.read_text(encoding="utf-8"), work)


def nanogpt(repo: Path, work: Path, seed: int) -> tuple[float, float]:
    """(wall seconds of nanoGPT's whole run, its final whole-split val loss) for one seed."""
    src = (repo / "train.py").read_text(encoding="utf-8")
    seeded = src.replace("torch.manual_seed(1337 + seed_offset)", f"torch.manual_seed({seed} + seed_offset)")
    if seeded == src and seed != 1337:
        raise SystemExit("vs_nanogpt: this nanoGPT's train.py seeds differently; cannot run other seeds")
    (work / "train.py").write_text(seeded, encoding="utf-8")
    for name in ("model.py", "configurator.py"):
        shutil.copy(repo / name, work / name)
    shutil.copytree(repo / "config", work / "config", dirs_exist_ok=True)
    out = work / f"out-{seed}"
    t = time.perf_counter()
    subprocess.run(
        [sys.executable, "train.py", "config/train_shakespeare_char.py", *RECIPE, f"--out_dir={out}"],
        cwd=work,
        check=True,
        capture_output=True,
    )
    wall = time.perf_counter() - t
    val = subprocess.run(
        [sys.executable, "-c", FULL_VAL, str(out / "ckpt.pt"), str(work / "data/shakespeare_char/val.bin")],
        cwd=work,
        check=True,
        capture_output=True,
        text=True,
    )
    return wall, float(val.stdout.split()[-1])  # after the model's own "number of parameters" line


def tui_gpt(text: Path, target: float, seed: int, steps: int, extra: list[str]) -> float | None:
    """tui-gpt's wall seconds to `target` on the whole validation split, or None."""
    bench = ["bench", "--text", str(text), "--tokenizer", "char", "--to-loss", f"{target:.4f}"]
    r = subprocess.run(
        [sys.executable, "-m", "tui_gpt", *bench, "--seed", str(seed), "--steps", str(steps), "--no-record", *extra],
        check=True,
        capture_output=True,
        text=True,
    )
    m = re.search(r"median_s=(\S+)", r.stdout)
    return float(m.group(1)) if m and m.group(1) != "nan" else None


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("nanogpt", type=Path)
    p.add_argument("text", type=Path)
    p.add_argument("--seeds", type=int, default=3)
    p.add_argument("--steps", type=int, default=2000, help="tui-gpt's step budget (its schedule's length)")
    args, extra = p.parse_known_args()
    seeds = [1337 + i for i in range(args.seeds)]
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        prepare(args.text, work)
        nano = [nanogpt(args.nanogpt, work, s) for s in seeds]
        for s, (wall, val) in zip(seeds, nano, strict=True):
            print(f"nanoGPT seed {s}: {wall:.1f} s, whole-split val {val:.4f}", flush=True)
        target = statistics.mean(v for _, v in nano)
        walls = [w for w, _ in nano]
        ours = []
        for s in seeds:  # taking turns: a load on the machine falls on both alike
            ours.append(tui_gpt(args.text, target, s, args.steps, extra))
            print(f"tui-gpt seed {s}: {ours[-1]} s to {target:.4f}", flush=True)
            walls.append(nanogpt(args.nanogpt, work, s)[0])
            print(f"nanoGPT seed {s} again: {walls[-1]:.1f} s", flush=True)
    reached = [t for t in ours if t is not None]
    mine = statistics.median(reached) if len(reached) == len(ours) else float("nan")
    print(
        f"target {target:.4f} (nanoGPT's mean whole-split val); nanoGPT median wall {statistics.median(walls):.1f} s "
        f"over {len(walls)} runs; tui-gpt median {mine:.1f} s ({len(reached)}/{len(ours)} reached); "
        f"ratio {mine / statistics.median(walls):.2f}"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
