"""`--dtype auto`, measured: a short timed trial of each way to run the model, remembered per machine.

A dtype picked from CPU flags is wrong somewhere: bf16 autocast was 1.3x faster than fp32 on one
2-core AVX-512 BF16 CPU and 1.6x slower on another. So auto trains a throwaway copy of the actual
model shape for a few steps in each candidate way (fp32 / bf16 autocast, SDPA / explicit attention,
and for headless runs the thread count), keeps the fastest, and caches the answer in a small JSON
file keyed by CPU model, torch version, device, threads and model shape, so the trial runs about
once a day.
"""

from __future__ import annotations

import json
import os
import platform
import time
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path

import torch

from tui_gpt.errors import TuiGptError
from tui_gpt.model import GPT, GPTConfig
from tui_gpt.savedir import read_capped
from tui_gpt.settings import cores, is_int, is_number

TRIAL_SECONDS = 2.0  # the whole trial, all candidates together
CACHE_FILE = "autotune.json"
CACHE_VERSION = 1
# A trial that ran while the machine was busy can pick badly (fewer threads win under load):
# measure again after a day rather than keep that choice for good.
CACHE_TTL_S = 24 * 3600
# The cache is a file anyone with the home folder can write: read no more than this, and show no
# text longer than WHY_MAX (a day's entries for a few model shapes take a few kB).
CACHE_MAX_BYTES = 1 << 20
KEY_MAX = 1000
WHY_MAX = 500


@dataclass
class Choice:
    """How to run the model on this machine, and why."""

    dtype: str  # "float32" | "bfloat16"
    sdpa: bool | None  # None: the model's own rule
    threads: int | None = None  # None: leave the process's thread count alone
    note: str = ""


def cache_dir() -> Path:
    """TUI_GPT_CACHE, else $XDG_CACHE_HOME/tui-gpt, else ~/.cache/tui-gpt."""
    if os.environ.get("TUI_GPT_CACHE"):
        return Path(os.environ["TUI_GPT_CACHE"])
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "tui-gpt"


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown cpu"


def machine_key(device: torch.device, threads: int) -> str:
    where = torch.cuda.get_device_name(device) if device.type == "cuda" else cpu_model()
    return f"{where} | torch {torch.__version__} | {device.type} | {threads} threads"


def shape_key(m: GPTConfig, batch_size: int) -> str:
    return f"V{m.vocab_size} T{m.block_size} L{m.n_layer} H{m.n_head} C{m.n_embd} B{batch_size}"


def _plain(text: object, limit: int) -> bool:
    """A short line of printable text: no newline, no terminal escape (ESC, CSI), nothing huge."""
    return isinstance(text, str) and len(text) <= limit and text.isprintable()


def _valid(key: object, entry: object) -> bool:
    """Whether a cache entry is one `choose` could have written, and is less than a day old."""
    if not _plain(key, KEY_MAX) or not isinstance(entry, dict):
        return False
    threads = entry.get("threads")
    return (
        entry.get("dtype") in ("float32", "bfloat16")
        and any(entry.get("sdpa") is v for v in (True, False, None))  # `is`: 1 and 0 are no answer
        and (threads is None or (is_int(threads) and 1 <= threads <= cores()))
        and _plain(entry.get("why"), WHY_MAX)
        and is_number(entry.get("time"))
        and 0 <= time.time() - entry["time"] < CACHE_TTL_S
    )


def _read_cache() -> dict[str, dict]:
    """The cache's valid entries by key. The file is untrusted input: too big, not a regular file,
    the wrong shape or an entry `choose` could not have written, and it (or that entry) is ignored."""
    try:
        data = json.loads(read_capped(cache_dir() / CACHE_FILE, CACHE_MAX_BYTES).decode("utf-8"))
    except (OSError, ValueError, RecursionError, TuiGptError):  # ValueError: also bad UTF-8 and bad JSON
        return {}
    if not isinstance(data, dict) or data.get("version") != CACHE_VERSION or not isinstance(data.get("entries"), dict):
        return {}
    return {k: v for k, v in data["entries"].items() if _valid(k, v)}


def _write_cache(key: str, entry: dict) -> None:
    """Best effort: a read-only or missing home only costs a trial next time.

    Only the valid entries are written back: a file of the wrong shape is replaced, and old ones go.
    """
    data = {"version": CACHE_VERSION, "entries": {**_read_cache(), key: entry}}
    path = cache_dir() / CACHE_FILE
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_text(json.dumps(data, indent=1), encoding="utf-8")
        os.replace(tmp, path)  # atomic, so ranks or runs racing here never see half a file
    except OSError:
        pass


def _cached(key: str) -> dict | None:
    return _read_cache().get(key)


def bf16_usable(device: torch.device) -> bool:
    """Whether bf16 autocast runs at all here (whether it is faster is for the trial to say)."""
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    return device.type == "cpu"


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def set_attention(model: torch.nn.Module, sdpa: bool | None) -> None:
    """Pick SDPA (True), the explicit path (False) or the model's own rule (None) in every layer."""
    for m in model.modules():
        if hasattr(m, "use_sdpa"):
            m.use_sdpa = sdpa


def time_candidates(
    mconf: GPTConfig,
    batch_size: int,
    device: torch.device,
    candidates: list[tuple[str, bool | None, int]],
    seconds: float = TRIAL_SECONDS,
) -> dict[tuple[str, bool | None, int], float]:
    """Median seconds per training step of each (dtype, sdpa, threads) on a throwaway model.

    The candidates take turns, one step each per round, so a load that comes and goes (a shared
    machine) falls on all of them alike. Round 0 warms up (allocator, kernels, autocast's weight
    casts) and counts only when the budget is gone after it (a big model or a loaded machine).
    Torch's global RNG and thread count are restored after.
    """
    threads_before = torch.get_num_threads()
    times: dict[tuple[str, bool | None, int], list[float]] = {c: [] for c in candidates}
    warm: dict[tuple[str, bool | None, int], float] = {}
    cuda = [torch.cuda.current_device()] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=cuda):
        torch.manual_seed(0)
        model = GPT(GPTConfig(**{**mconf.to_dict(), "dropout": 0.0})).to(device)
        opt = model.configure_optimizer(1e-4, 0.1, (0.9, 0.99))
        gen = torch.Generator().manual_seed(0)
        T = mconf.block_size
        x = torch.randint(mconf.vocab_size, (batch_size, T), generator=gen).to(device)
        y = torch.randint(mconf.vocab_size, (batch_size, T), generator=gen).to(device)
        end = time.perf_counter() + seconds
        try:
            for rnd in range(1000):
                for c in candidates:
                    dtype, sdpa, threads = c
                    torch.set_num_threads(threads)
                    set_attention(model, sdpa)
                    ctx = (
                        nullcontext()
                        if dtype == "float32"
                        else torch.autocast(device.type, dtype=getattr(torch, dtype))
                    )
                    _sync(device)
                    t = time.perf_counter()
                    with ctx:
                        _, loss, _ = model(x, y)
                    loss.backward()
                    opt.step()
                    opt.zero_grad(set_to_none=True)
                    _sync(device)
                    if rnd == 0:
                        warm[c] = time.perf_counter() - t
                    else:
                        times[c].append(time.perf_counter() - t)
                if time.perf_counter() >= end:
                    break
        finally:
            torch.set_num_threads(threads_before)
    return {c: sorted(v)[len(v) // 2] if v else warm[c] for c, v in times.items()}


def _label(dtype: str, sdpa: bool | None, threads: int, show_threads: bool) -> str:
    attn = {True: " SDPA", False: " explicit", None: ""}[sdpa]
    return f"{'bf16' if dtype == 'bfloat16' else 'fp32'}{attn}" + (f" {threads}t" if show_threads else "")


def thread_counts() -> list[int]:
    """Thread counts worth a trial: all cores, and half of them (tiny models can lose on sync)."""
    n = cores()
    return sorted({n, max(1, n // 2)}, reverse=True)


def choose(
    mconf: GPTConfig,
    batch_size: int,
    device: torch.device,
    dtypes: list[str] | None = None,
    attention: list[bool | None] | None = None,
    threads: list[int] | None = None,
    seconds: float = TRIAL_SECONDS,
    use_cache: bool = True,
) -> Choice:
    """The fastest way to train this model shape on this machine, from a trial or the cache.

    dtypes: default float32 and (where autocast runs) bfloat16; attention: SDPA and explicit;
    threads: default the current count only. All cores win unless fewer is 5% faster.
    """
    if device.type == "mps":  # no trial: bf16 autocast on MPS is not reliable across torch versions
        return Choice("float32", None, None, "float32 (MPS)")
    dtypes = dtypes or (["float32", "bfloat16"] if bf16_usable(device) else ["float32"])
    attention = attention or [True, False]
    counts = threads if threads and device.type == "cpu" else [torch.get_num_threads()]
    key = (
        f"{machine_key(device, max(counts))} | {shape_key(mconf, batch_size)} | "
        f"{'/'.join(dtypes)} {'/'.join(map(str, attention))} {'/'.join(map(str, counts))}"
    )
    hit = _cached(key) if use_cache else None
    if hit and hit.get("dtype") in dtypes and hit.get("sdpa") in attention and hit.get("threads") in counts:
        return Choice(hit["dtype"], hit["sdpa"], hit["threads"], f"{hit.get('why', '')} (cached)")
    cands = [(d, a, n) for n in counts for d in dtypes for a in attention]
    t = time_candidates(mconf, batch_size, device, cands, seconds)
    best = min(t, key=t.__getitem__)
    top = max(counts)
    if best[2] < top:  # all cores unless fewer is clearly faster: small gains are noise on a shared machine
        best_top = min((c for c in t if c[2] == top), key=t.__getitem__)
        if t[best] > 0.95 * t[best_top]:
            best = best_top
    many = len(counts) > 1
    ranked = ", ".join(f"{_label(*c, many)} {1000 * v:.1f}" for c, v in sorted(t.items(), key=lambda kv: kv[1]))
    why = f"{_label(best[0], best[1], best[2], True)}: fastest in a {seconds:g} s trial, ms/step {ranked}"
    _write_cache(key, {"dtype": best[0], "sdpa": best[1], "threads": best[2], "why": why, "time": time.time()})
    return Choice(best[0], best[1], best[2], why)
