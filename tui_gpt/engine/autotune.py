"""`--dtype auto`, measured: a short timed trial of each way to run the model, remembered per machine.

A dtype picked from CPU flags is wrong somewhere: bf16 autocast was 1.3x faster than fp32 on one
2-core AVX-512 BF16 CPU and 1.6x slower on another. So auto trains a throwaway copy of the actual
model shape for a few steps in each candidate way (fp32 / bf16 autocast, SDPA / explicit attention,
and for headless runs the thread count), keeps the fastest, and caches the answer in a small JSON
file keyed by CPU model, torch version, device, threads and model shape, so the trial runs about
once a day. A choice measured while other processes loaded the machine is not cached, and the real
run checks it against the runners-up (runcheck.py), which may change it and the cache.
"""

from __future__ import annotations

import json
import os
import platform
import time
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from statistics import median
from typing import TypedDict

import torch

from tui_gpt.engine.cpuload import Load, busy_note
from tui_gpt.engine.model import GPT, CausalSelfAttention, GPTConfig
from tui_gpt.engine.savedir import read_capped
from tui_gpt.errors import TuiGptError, env_path, env_path_or
from tui_gpt.settings import cores, is_int, is_number

TRIAL_SECONDS = 2.0  # the whole trial, all candidates together
# Medians of fewer steps are noise: at least this many timed rounds (the warm-up round aside), even
# past the time budget, unless the trial has run TRIAL_MAX times its budget (a big model).
MIN_ROUNDS = 5
TRIAL_MAX = 3
# A candidate this much slower than the fastest is timed no more: on a loaded machine a step on all
# cores can take 20 times longer than on one, and would eat the budget the close ones need.
TRIAL_DROP = 2.0
CACHE_FILE = "autotune.json"
CACHE_VERSION = 2  # 2: entries carry the alternatives for the real run to check, and ms/step
# A trial that ran while the machine was busy can pick badly (fewer threads win under load):
# measure again after a day rather than keep that choice for good.
CACHE_TTL_S = 24 * 3600
# The cache is a file anyone with the home folder can write: read no more than this, and show no
# text longer than WHY_MAX (a day's entries for a few model shapes take a few kB).
CACHE_MAX_BYTES = 1 << 20
KEY_MAX = 1000
WHY_MAX = 500
ALTS_MAX = 8

Way = tuple[str, bool | None, int]  # (dtype, sdpa, threads): one way to run a training step


@dataclass
class Choice:
    """How to run the model on this machine, and why."""

    dtype: str  # "float32" | "bfloat16"
    sdpa: bool | None  # None: the model's own rule
    threads: int | None = None  # None: leave the process's thread count alone
    note: str = ""
    alts: list[Way] = field(default_factory=list)  # the runners-up, fastest first, for the real run to try
    ms: float | None = None  # the trial's ms/step for this way
    key: str = ""  # the cache's key for this machine, shape and set of candidates

    @property
    def way(self) -> Way:
        return (self.dtype, self.sdpa, self.threads or torch.get_num_threads())


def cache_dir() -> Path:
    """TUI_GPT_CACHE, else $XDG_CACHE_HOME/tui-gpt, else ~/.cache/tui-gpt."""
    if folder := env_path("TUI_GPT_CACHE"):
        return folder
    base = env_path_or("XDG_CACHE_HOME", "~/.cache")
    return base / "tui-gpt"


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


def _valid_way(dtype: object, sdpa: object, threads: object) -> bool:
    return (
        dtype in ("float32", "bfloat16")
        and any(sdpa is v for v in (True, False, None))  # `is`: 1 and 0 are no answer
        and (threads is None or (isinstance(threads, int) and is_int(threads) and 1 <= threads <= cores()))
    )


def _valid(key: object, entry: object) -> bool:
    """Whether a cache entry is one `remember` could have written, and is less than a day old."""
    if not _plain(key, KEY_MAX) or not isinstance(entry, dict):
        return False
    alts, ms = entry.get("alts"), entry.get("ms")
    return (
        _valid_way(entry.get("dtype"), entry.get("sdpa"), entry.get("threads"))
        and isinstance(alts, list)
        and len(alts) <= ALTS_MAX
        and all(isinstance(a, list) and len(a) == 3 and a[2] is not None and _valid_way(*a) for a in alts)
        and (ms is None or (is_number(ms) and 0 < ms < 1e9))
        and _plain(entry.get("why"), WHY_MAX)
        and is_number(entry.get("time"))
        and 0 <= time.time() - entry["time"] < CACHE_TTL_S
    )


class CacheEntry(TypedDict):
    """One remembered choice in the cache file, as `remember` writes it (a way is a JSON list there)."""

    dtype: str
    sdpa: bool | None
    threads: int | None
    why: str
    alts: list[Way]
    ms: float | None
    time: float


def _read_cache() -> dict[str, CacheEntry]:
    """The cache's valid entries by key. The file is untrusted input: too big, not a regular file,
    the wrong shape or an entry `choose` could not have written, and it (or that entry) is ignored."""
    try:
        data = json.loads(read_capped(cache_dir() / CACHE_FILE, CACHE_MAX_BYTES).decode("utf-8"))
    except (OSError, ValueError, RecursionError, TuiGptError):  # ValueError: also bad UTF-8 and bad JSON
        return {}
    if not isinstance(data, dict) or data.get("version") != CACHE_VERSION or not isinstance(data.get("entries"), dict):
        return {}
    entries: dict[str, CacheEntry] = {}
    for key, entry in data["entries"].items():
        if _valid(key, entry):  # so each way of `alts` is a list of three: make it a Way
            entry["alts"] = [(d, a, n) for d, a, n in entry["alts"]]
            entries[key] = entry
    return entries


def _write_cache(key: str, entry: CacheEntry) -> None:
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


def _cached(key: str) -> CacheEntry | None:
    return _read_cache().get(key)


def remember(choice: Choice, why: str) -> None:
    """Cache `choice` (its way, runners-up and ms/step) under its key, `why` as the reason shown next time."""
    entry: CacheEntry = {
        "dtype": choice.dtype,
        "sdpa": choice.sdpa,
        "threads": choice.threads,
        "why": why[:WHY_MAX],
        "alts": choice.alts[:ALTS_MAX],  # JSON lists in the file
        "ms": choice.ms,
        "time": time.time(),
    }
    _write_cache(choice.key, entry)


def bf16_usable(device: torch.device) -> bool:
    """Whether bf16 autocast runs at all here (whether it is faster is for the trial to say)."""
    if device.type == "cuda":
        return bool(torch.cuda.is_bf16_supported())
    return device.type == "cpu"


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def set_attention(model: torch.nn.Module, sdpa: bool | None) -> None:
    """Pick SDPA (True), the explicit path (False) or the model's own rule (None) in every layer."""
    for m in model.modules():
        if isinstance(m, CausalSelfAttention):
            m.use_sdpa = sdpa


def _timed_step(model: GPT, opt: torch.optim.Optimizer, x: torch.Tensor, y: torch.Tensor, way: Way) -> float:
    """Seconds for one training step of `model` run `way`."""
    dtype, sdpa, threads = way
    torch.set_num_threads(threads)
    set_attention(model, sdpa)
    ctx = nullcontext() if dtype == "float32" else torch.autocast(x.device.type, dtype=getattr(torch, dtype))
    _sync(x.device)
    t = time.perf_counter()
    with ctx:
        _, loss, _ = model(x, y)
    loss.backward()
    opt.step()
    opt.zero_grad(set_to_none=True)
    _sync(x.device)
    return time.perf_counter() - t


def time_candidates(
    mconf: GPTConfig,
    batch_size: int,
    device: torch.device,
    candidates: list[Way],
    seconds: float = TRIAL_SECONDS,
) -> dict[Way, list[float]]:
    """Seconds per training step of each (dtype, sdpa, threads) on a throwaway model, one per round.

    The candidates take turns, one step each per round, so a load that comes and goes (a shared
    machine) falls on all of them alike; each round starts one candidate later, so the step after a
    thread-count switch is not always the same one's. Round 0 warms up (allocator, kernels,
    autocast's weight casts) and is not counted unless it is all there is. Rounds go on for
    `seconds` and at least MIN_ROUNDS more, up to TRIAL_MAX times `seconds`; a candidate more than
    TRIAL_DROP times slower than the fastest leaves the rounds. Torch's global RNG and thread
    count are restored after.
    """
    threads_before = torch.get_num_threads()
    times: dict[Way, list[float]] = {c: [] for c in candidates}
    cuda = [torch.cuda.current_device()] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=cuda):
        torch.manual_seed(0)
        model = GPT(GPTConfig(**{**mconf.to_dict(), "dropout": 0.0})).to(device)
        opt = model.configure_optimizer(1e-4, 0.1, (0.9, 0.99))
        gen = torch.Generator().manual_seed(0)
        x = torch.randint(mconf.vocab_size, (batch_size, mconf.block_size), generator=gen).to(device)
        y = torch.randint(mconf.vocab_size, (batch_size, mconf.block_size), generator=gen).to(device)
        start = time.perf_counter()
        try:
            warm = {c: _timed_step(model, opt, x, y, c) for c in candidates}
            live = list(candidates)
            for rnd in range(1, 1000):
                k = rnd % len(live)
                for c in live[k:] + live[:k]:
                    times[c].append(_timed_step(model, opt, x, y, c))
                best = min(median(times[c]) for c in live)
                live = [c for c in live if median(times[c]) <= TRIAL_DROP * best]
                spent = time.perf_counter() - start
                if spent >= TRIAL_MAX * seconds or (spent >= seconds and rnd >= MIN_ROUNDS):
                    break
        finally:
            torch.set_num_threads(threads_before)
    return {c: v or [warm[c]] for c, v in times.items()}


def spread(v: list[float]) -> str:
    """' ±N%': half the interquartile range against the median, where there are samples enough."""
    if len(v) < 4:
        return ""
    s = sorted(v)
    return f" ±{100 * (s[3 * len(s) // 4] - s[len(s) // 4]) / 2 / median(s):.0f}%"


def label(way: Way, show_threads: bool = True) -> str:
    dtype, sdpa, threads = way
    attn = {True: " SDPA", False: " explicit", None: ""}[sdpa]
    return f"{'bf16' if dtype == 'bfloat16' else 'fp32'}{attn}" + (f" {threads}t" if show_threads else "")


def thread_counts() -> list[int]:
    """Thread counts worth a trial: all cores, and half of them (tiny models can lose on sync)."""
    n = cores()
    return sorted({n, max(1, n // 2)}, reverse=True)


def alternatives(best: Way, t: dict[Way, float]) -> list[Way]:
    """The ways for the real run to try against `best`: the trial's runner-up, and the fastest of
    another dtype and of another thread count. A trial under load can misjudge a whole dimension
    (fewer threads win), so the runner-up alone would often differ only in the attention path."""
    rest = sorted((c for c in t if c != best), key=t.__getitem__)
    other_dtype = next((c for c in rest if c[0] != best[0]), None)
    other_threads = next((c for c in rest if c[2] != best[2]), None)
    return list(dict.fromkeys(c for c in [*rest[:1], other_dtype, other_threads] if c is not None))


def _fastest(t: dict[Way, float], counts: list[int]) -> Way:
    """The fastest way; all cores unless fewer is clearly (5%) faster: small gains are noise on a shared machine."""
    best = min(t, key=t.__getitem__)
    top = max(counts)
    if best[2] < top:
        best_top = min((c for c in t if c[2] == top), key=t.__getitem__)
        if t[best] > 0.95 * t[best_top]:
            best = best_top
    return best


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
    threads: default the current count only. All cores win unless fewer is 5% faster. A trial
    during which other processes used more than cpuload.BUSY_CORES is not cached.
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
    if hit and hit["dtype"] in dtypes and hit["sdpa"] in attention and hit["threads"] in counts:
        alts = [(d, a, n) for d, a, n in hit["alts"] if d in dtypes and a in attention and n in counts]
        return Choice(hit["dtype"], hit["sdpa"], hit["threads"], f"{hit['why']} (cached)", alts, hit["ms"], key)
    load = Load()
    cands = [(d, a, n) for n in counts for d in dtypes for a in attention]
    samples = time_candidates(mconf, batch_size, device, cands, seconds)
    t = {c: median(v) for c, v in samples.items()}
    best = _fastest(t, counts)
    many = len(counts) > 1
    rounds = max(map(len, samples.values()))
    ranked = ", ".join(f"{label(c, many)} {1000 * t[c]:.1f}{spread(samples[c])}" for c in sorted(t, key=t.__getitem__))
    rounds_text = f"{rounds} round{'s' if rounds > 1 else ''}"
    why = f"{label(best)}: fastest in a {seconds:g} s trial ({rounds_text}), ms/step {ranked}"
    choice = Choice(*best, why, alternatives(best, t), 1000 * t[best], key)
    busy = busy_note(load.others())
    if not busy:
        remember(choice, why)
    choice.note += busy
    return choice
