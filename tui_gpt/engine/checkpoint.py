"""Checkpoints: a directory of safetensors and JSON, written atomically, loaded without pickle.

Layout of a checkpoint directory:
    model.safetensors      the weights
    optimizer.safetensors  AdamW moments, plus the random-number state that resuming needs
    config.json            model, training and corpus settings
    tokenizer.json         the Hugging Face tokenizer
    trainer.json           step, elapsed time, optimizer hyper-parameters, and the best val loss and its step
    history.json           the loss curve
    best/                  --keep best: a checkpoint of the weights at the best val loss so far, the same layout
"""

from __future__ import annotations

import json
import math
import os
import shutil
import struct
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypedDict

import torch
from safetensors import SafetensorError
from safetensors import torch as st

from tui_gpt.engine.corpus import Corpus
from tui_gpt.engine.dataset import TokenData
from tui_gpt.engine.devices import pick_device
from tui_gpt.engine.model import GPT, GPTConfig
from tui_gpt.engine.savedir import (
    CAPS,
    FILES,
    FORMAT,
    LOCK,
    CheckpointLock,
    aside,
    carry_best,
    check_out,
    read_capped,
    read_json,
    regular_file,
    remove_orphans,
    temp_prefix,
    write_json,
)
from tui_gpt.engine.tokenizer import TextTokenizer
from tui_gpt.engine.trainer import History, TrainConfig, Trainer, available_bytes
from tui_gpt.errors import TuiGptError, checked_path, reason
from tui_gpt.settings import first_problem, is_int, is_number, problem

__all__ = ["FILES", "FORMAT", "load_model", "load_trainer", "read_config_json", "resolve", "save_checkpoint"]

HEADER_CAP = 64 << 20  # bytes of safetensors JSON header we are willing to parse
# The most tensors a header may list: the optimizer file of the deepest model RULES allow holds
# 3 x (12 x 512 + 4) + 2 = 18,446 (two moments and a step per parameter, two random states).
MAX_TENSORS = 1 << 15
DTYPE_BYTES = {"F64": 8, "F32": 4, "F16": 2, "BF16": 2, "I64": 8, "I32": 4, "I16": 2, "I8": 1, "U8": 1, "BOOL": 1}
WEIGHT_DTYPES = ("F32", "F16", "BF16")


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class CorpusInfo(TypedDict):
    """config.json's "corpus": what a resume needs to find the training text again."""

    name: str
    sources: list[str]  # as given; a file that exists as its absolute path
    documents: int
    chars: int


def save_checkpoint(
    out: Path, trainer: Trainer, tokenizer: TextTokenizer, corpus_info: CorpusInfo, run_id: str | None = None
) -> Path:
    """Write a complete checkpoint to `out`, replacing any previous one only once it is whole.

    `run_id` is the run's own id, kept in trainer.json: `runs rm --with-checkpoints` deletes a folder
    only while it still holds the checkpoint of the run it removes (savedir.checkpoint_run_id).

    `out` must be new, empty or a tui-gpt checkpoint: anything else is refused, never overwritten.
    A failed write (a full disk, say) leaves the previous checkpoint as it was and raises one line.
    """
    out = check_out(out)
    config: dict[str, Any] = {
        "format": FORMAT,
        "model": trainer.model.config.to_dict(),
        "train": trainer.config.to_dict(),
        "tokenizer": tokenizer.kind,
        "corpus": corpus_info,
    }
    if problem := _check_settings(config):  # never replace a checkpoint with one that cannot be loaded
        raise TuiGptError(f"not saved to {out}: {problem}, which no checkpoint may hold")
    with CheckpointLock(out):  # ours already if the caller holds it for the run
        previous = _saved_step(out)
        remove_orphans(out)
        tmp = Path(tempfile.mkdtemp(prefix=temp_prefix(out), dir=out.parent))
        old = aside(out)
        try:
            _write_files(tmp, trainer, tokenizer, config, run_id)
            # The lock file moves with the folder (same inode), so the lock outlives the swap.
            os.link(out / LOCK, tmp / LOCK)
            # Swap directories: the old checkpoint is removed only after the new one is in place.
            trash = None
            if (out / "config.json").exists():
                if old.exists():
                    carry_best(old, out)  # a save killed after its swap: the best/ checkpoint is still in it
                    _discard(old, out)
                out.rename(old)
            else:  # only our lock: a new folder, or an earlier save was interrupted and its .old stays
                trash = Path(tempfile.mkdtemp(prefix=temp_prefix(out), dir=out.parent))
                out.rename(trash)  # over the empty folder; holds only the lock, so an orphan is tidied
            tmp.rename(out)
            _fsync_dir(out.parent)
            for done in (old, trash):
                if done is not None and done.exists():
                    carry_best(done, out)  # --keep best's checkpoint stays in the run's folder
                    _discard(done, out)
        except BaseException as exc:
            shutil.rmtree(tmp, ignore_errors=True)
            # A swap that failed half way leaves the previous checkpoint aside, where loading finds it.
            if isinstance(exc, OSError | SafetensorError):
                where = "nothing saved" if previous is None else f"the previous checkpoint at step {previous} is intact"
                raise TuiGptError(f"could not save to {out}: {reason(exc)}; {where}") from None
            raise
    return out


def _discard(folder: Path, out: Path) -> None:
    """Delete a folder of ours, renamed to a temp name first: a kill mid-delete leaves an orphan, not a torn .old."""
    gone = Path(tempfile.mkdtemp(prefix=temp_prefix(out), dir=out.parent))
    folder.rename(gone)
    shutil.rmtree(gone)


def _write_files(
    tmp: Path, trainer: Trainer, tokenizer: TextTokenizer, config: dict[str, Any], run_id: str | None = None
) -> None:
    model = trainer.model
    st.save_model(model, str(tmp / "model.safetensors"))
    opt_tensors, hyper = _optimizer_tensors(trainer)
    opt_tensors["rng.batches"] = trainer.generator.get_state()
    opt_tensors["rng.torch"] = torch.get_rng_state()
    st.save_file({k: v.detach().cpu().contiguous() for k, v in opt_tensors.items()}, str(tmp / "optimizer.safetensors"))
    write_json(tmp / "config.json", config)
    tokenizer.save(tmp / "tokenizer.json")
    state: dict[str, Any] = {"step": trainer.step, "elapsed": trainer.elapsed, "param_groups": hyper}
    if (best := trainer.history.best_val()) is not None:  # also in history.json's evaluations: here to read at once
        state["best_val"] = {"step": best[0], "loss": best[1]}
    write_json(tmp / "trainer.json", {**state, "run": run_id} if run_id else state)
    write_json(tmp / "history.json", trainer.history.to_dict())
    for name in FILES:
        with open(tmp / name, "rb") as f:
            os.fsync(f.fileno())
    _fsync_dir(tmp)


def _saved_step(out: Path) -> int | None:
    """The step of the checkpoint now in `out`, if there is a readable one."""
    try:
        step = json.loads(read_capped(out / "trainer.json", CAPS["trainer.json"]))["step"]
        return step if isinstance(step, int) else None
    except (OSError, TuiGptError, ValueError, KeyError, TypeError):
        return None


def _optimizer_tensors(trainer: Trainer) -> tuple[dict[str, torch.Tensor], list[dict[str, Any]]]:
    sd = trainer.optimizer.state_dict()
    tensors: dict[str, torch.Tensor] = {}
    for idx, state in sd["state"].items():
        for key, value in state.items():
            tensors[f"state.{idx}.{key}"] = value if torch.is_tensor(value) else torch.tensor(value)
    hyper = [{k: v for k, v in g.items() if k != "params"} for g in sd["param_groups"]]
    return tensors, hyper


def resolve(path: Path) -> Path:
    """The checkpoint directory to read: `path`, or what an interrupted save left of it."""
    path = checked_path(path)
    old = aside(path)
    if not path.exists() or (path.is_dir() and not (path / "config.json").exists() and old.is_dir()):
        if old.is_dir():  # a save was interrupted between its two renames
            return old
        raise TuiGptError(f"{path}: no such checkpoint; pass a directory written by 'tui-gpt train --out'")
    if not path.is_dir():
        raise TuiGptError(f"{path}: not a checkpoint directory; pass the folder that holds model.safetensors")
    return path


def _read_json(path: Path) -> dict[str, Any]:
    return read_json(path, "missing; the checkpoint is incomplete, save it again", "; the checkpoint cannot be used")


def read_config_json(path: Path) -> dict[str, Any]:
    """The checkpoint's config.json as a dict, every value checked."""
    path = resolve(path)
    cfg = _read_json(path / "config.json")
    if cfg.get("format") != FORMAT:
        raise TuiGptError(f"{path}: not a tui-gpt checkpoint (format {str(cfg.get('format'))[:40]!r})")
    if problem := _check_settings(cfg):
        raise TuiGptError(f"{path / 'config.json'}: corrupt settings ({problem}); the checkpoint cannot be used")
    return cfg


def _check_settings(cfg: dict[str, Any]) -> str | None:
    """What is wrong with config.json's settings, or None: the one check of saving and loading."""
    return _check_model(cfg.get("model")) or _check_train(cfg.get("train", {})) or _check_corpus(cfg.get("corpus"))


def _check_model(model: object) -> str | None:
    """What is wrong with a config.json "model" entry, or None."""
    if not isinstance(model, dict):
        return "no model section"
    try:
        config = GPTConfig(**model)
    except TypeError as exc:
        return str(exc)
    names = ("vocab_size", "block_size", "n_layer", "n_head", "n_embd", "dropout")
    if why := first_problem({name: getattr(config, name) for name in names}):
        return why
    if not isinstance(config.causal, bool) or not isinstance(config.bias, bool):
        return "causal and bias must be true or false"
    if config.gelu_approximate not in ("none", "tanh"):
        return f"gelu_approximate must be none or tanh, got {config.gelu_approximate!r}"
    if not isinstance(config.layer_norm_eps, int | float) or not 0 < config.layer_norm_eps < 1:
        return f"layer_norm_eps must be a small positive number, got {config.layer_norm_eps!r}"
    n_pos = config.n_positions
    if n_pos is not None and (why := problem("n_positions", n_pos)):
        return f"n_positions {why}"
    if n_pos is not None and n_pos < config.block_size:
        return f"n_positions must be at least block_size ({config.block_size}), got {n_pos}"
    return None


def _check_train(train: object) -> str | None:
    """What is wrong with a config.json "train" entry, or None."""
    if not isinstance(train, dict):
        return "train must be an object"
    # Where it trained, which a resume never reuses (load_trainer): any name torch had then, not only --device's.
    device = train.get("device", "auto")
    if not (isinstance(device, str) and 0 < len(device) < 40):
        return f"train.device must be a device name, got {str(device)[:20]!r}"
    return first_problem({name: value for name, value in train.items() if name != "device"}, "train.")


def _check_corpus(corpus: object) -> str | None:
    if corpus is None:
        return None
    if not isinstance(corpus, dict):
        return "corpus must be an object"
    sources = corpus.get("sources", [])
    if not isinstance(sources, list) or not all(isinstance(s, str) and s for s in sources):
        return "corpus.sources must be a list of file names"
    return None


def _check_trainer_state(state: dict[str, Any], groups: int) -> str | None:
    """What is wrong with trainer.json, or None."""
    step: object = state.get("step")
    elapsed, hyper = state.get("elapsed", 0.0), state.get("param_groups")
    if not (isinstance(step, int) and is_int(step) and 0 <= step < 1 << 53):
        return f"step must be an integer >= 0, got {str(step)[:20]!r}"
    if not is_number(elapsed) or elapsed < 0:
        return f"elapsed must be a number >= 0, got {str(elapsed)[:20]!r}"
    if not isinstance(hyper, list) or len(hyper) != groups or not all(isinstance(g, dict) for g in hyper):
        return f"param_groups must be a list of {groups} objects"
    for g in hyper:
        betas = g.get("betas", (0.9, 0.99))
        if not is_number(g.get("lr", 0.0)) or g.get("lr", 0.0) < 0:
            return f"lr must be a number >= 0, got {str(g.get('lr'))[:20]!r}"
        if not isinstance(betas, list) or len(betas) != 2 or not all(is_number(b) and 0 <= b < 1 for b in betas):
            return "betas must be two numbers in [0, 1)"
        if not is_number(g.get("eps", 1e-8)) or g.get("eps", 1e-8) <= 0:
            return "eps must be a number > 0"
        if not is_number(g.get("weight_decay", 0.0)) or g.get("weight_decay", 0.0) < 0:
            return "weight_decay must be a number >= 0"
        if any(k not in ("lr", "betas") and not (v is None or isinstance(v, bool | int | float)) for k, v in g.items()):
            return "param_groups values must be numbers or true/false"
    return None


def _check_history(history: dict[str, Any], heads: tuple[int, int] = (0, 0)) -> str | None:
    """What is wrong with history.json, or None; `heads`: the model's (n_layer, n_head), the head scores' shape."""
    for name in ("steps", "loss", "lr", "eval_steps", "eval_train", "eval_val"):
        values = history.get(name, [])
        if not isinstance(values, list):
            return f"{name} must be a list"
        integer = name in ("steps", "eval_steps")
        ok = is_int if integer else (lambda v: isinstance(v, int | float) and not isinstance(v, bool))
        if not all(ok(v) and (not integer or v >= 0) for v in values):
            return f"{name} must hold only {'integers >= 0' if integer else 'numbers'}"
    for names in (("steps", "loss", "lr"), ("eval_steps", "eval_train", "eval_val")):
        if len({len(history.get(n, [])) for n in names}) > 1:
            return f"{', '.join(names)} must be as long as each other"
    bpt = history.get("val_bytes_per_token")
    if bpt is not None and not (isinstance(bpt, int | float) and not isinstance(bpt, bool) and bpt > 0):
        return "val_bytes_per_token must be a number > 0 or null"
    changes = history.get("changes", [])
    if not isinstance(changes, list) or not all(isinstance(c, dict) for c in changes):
        return "changes must be a list of objects"
    return _check_head_scores(history, heads)


def _check_head_scores(history: dict[str, Any], shape: tuple[int, int]) -> str | None:
    """What is wrong with history.json's head scores (TrainEvent.heads, one per head_steps entry), or None."""
    steps, scores = history.get("head_steps", []), history.get("head_scores", [])
    if not isinstance(steps, list) or not all(is_int(s) and s >= 0 for s in steps):
        return "head_steps must be a list of integers >= 0"
    if not isinstance(scores, list) or len(scores) != len(steps):
        return "head_scores must be a list as long as head_steps"
    if len(steps) > len(history.get("steps", [])) + 1:  # a reading is taken on a step, or before the first
        return "head_steps must not outnumber the steps"
    layers, heads = shape

    def table(value: object) -> bool:
        return (
            isinstance(value, list)
            and len(value) == layers
            and all(isinstance(row, list) and len(row) == heads and all(map(is_number, row)) for row in value)
        )

    for reading in scores:
        if not isinstance(reading, dict):
            return "head_scores must hold objects"
        for name in ("previous_token", "induction"):
            if not table(reading.get(name)):
                return f"head_scores' {name} must be {layers} x {heads} finite numbers (the model's layers x heads)"
        if not is_number(reading.get("icl")):
            return "head_scores' icl must be a finite number"
        if reading.get("in_context") is not None and not is_number(reading.get("in_context")):
            return "head_scores' in_context must be a finite number or null"
    return None


def safetensors_header(file: Path) -> dict[str, tuple[str, tuple[int, ...]]]:
    """Names, dtypes and shapes in a safetensors file, from its header alone; one line if malformed."""
    if not file.exists() and not file.is_symlink():
        raise TuiGptError(f"{file}: missing; the checkpoint is incomplete, save it again")
    size, raw = _header_bytes(file)
    try:
        # objects: the header, its __metadata__ and one per tensor
        header = json.loads(raw, object_pairs_hook=_at_most(MAX_TENSORS + 2))
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError):
        raise TuiGptError(f"{file}: corrupt weights (the header is not JSON)") from None
    except _TooMany:
        raise TuiGptError(f"{file}: corrupt weights (more than {MAX_TENSORS:,} tensors)") from None
    if not isinstance(header, dict):
        raise TuiGptError(f"{file}: corrupt weights (the header is not a JSON object)")
    data = size - 8 - len(raw)
    out: dict[str, tuple[str, tuple[int, ...]]] = {}
    for name, entry in header.items():
        if name == "__metadata__":
            continue
        try:
            dtype, shape, (begin, end) = entry["dtype"], entry["shape"], entry["data_offsets"]
            ok = dtype in DTYPE_BYTES and isinstance(shape, list) and all(is_int(d) and d >= 0 for d in shape)
            ok = ok and is_int(begin) and is_int(end) and 0 <= begin <= end <= data
            ok = ok and end - begin == math.prod(shape) * DTYPE_BYTES[dtype]
        except (KeyError, TypeError, ValueError):
            ok = False
        if not ok:
            raise TuiGptError(f"{file}: corrupt weights (entry {name[:40]!r} is malformed or past the end)")
        out[name] = (dtype, tuple(shape))
    return out


class _TooMany(Exception):
    pass


def _at_most(n: int) -> Callable[[list[tuple[str, Any]]], dict[str, Any]]:
    """A json object_pairs_hook that stops the parse past `n` objects, before it has built more."""
    seen = 0

    def hook(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
        nonlocal seen
        seen += 1
        if seen > n:
            raise _TooMany
        return dict(pairs)

    return hook


def _header_bytes(file: Path) -> tuple[int, bytes]:
    """(file size, JSON header bytes) of a safetensors file, read without trusting its length field."""
    with regular_file(file) as fd:
        size = os.fstat(fd).st_size
        first = os.pread(fd, 8, 0)
        if len(first) < 8:
            raise TuiGptError(f"{file}: corrupt weights (shorter than a safetensors header)")
        (n,) = struct.unpack("<Q", first)
        if n > min(HEADER_CAP, size - 8):
            raise TuiGptError(f"{file}: corrupt weights (header length {n} is past the end or too large)")
        return size, os.pread(fd, n, 8)


def _check_weights_header(file: Path, config: GPTConfig) -> int:
    """Check the weights file's header against the model config.json describes; returns the parameter count.

    The model is built on the meta device (no memory) to learn the names and shapes it expects.
    """
    header = safetensors_header(file)
    with torch.device("meta"):
        expected = GPT(config).state_dict(keep_vars=True)
    groups: dict[int, list[str]] = {}
    for name, tensor in expected.items():
        groups.setdefault(id(tensor), []).append(name)
    for name, (dtype, shape) in header.items():
        if name not in expected:
            raise TuiGptError(f"{file}: weights do not match config.json (unexpected tensor {name[:40]!r})")
        if shape != tuple(expected[name].shape) or dtype not in WEIGHT_DTYPES:
            raise TuiGptError(
                f"{file}: weights do not match config.json ({name} is {dtype} {list(shape)}, "
                f"config.json needs {list(expected[name].shape)})"
            )
    for names in groups.values():
        if not any(n in header for n in names):
            raise TuiGptError(f"{file}: weights do not match config.json ({names[0]} missing)")
    return sum(t.numel() for t in {id(t): t for t in expected.values()}.values())


def _check_memory(path: Path, config: GPTConfig, params: int, copies: int) -> None:
    """Refuse a model that cannot fit: `copies` float32 copies of the weights, plus each layer's mask."""
    need = params * 4 * copies + config.mask_bytes
    free = available_bytes()
    if free is not None and need > free:
        raise TuiGptError(
            f"{path}: the model needs about {need / 1e9:.1f} GB of memory, {free / 1e9:.1f} GB free; "
            "use a machine with more memory"
        )


def load_tokenizer(path: Path, vocab_size: int) -> TextTokenizer:
    """The checkpoint's tokenizer, refused unless it has the model's vocabulary size."""
    file = path / "tokenizer.json"
    try:
        tokenizer = TextTokenizer.load(file)
    except FileNotFoundError:
        raise TuiGptError(f"{file}: missing; the checkpoint is incomplete, save it again") from None
    if tokenizer.vocab_size != vocab_size:
        raise TuiGptError(
            f"{file}: {tokenizer.vocab_size} tokens, but the model has vocab_size {vocab_size}; "
            "the tokenizer is from another run"
        )
    return tokenizer


def load_model(path: Path, device: str = "cpu") -> tuple[GPT, TextTokenizer, dict[str, Any]]:
    """The model and tokenizer of a checkpoint, for probing; never unpickles.

    Everything is checked against everything else before any tensor is built.
    """
    where = pick_device(device)  # a device not here: one line, before anything is read
    path = resolve(path)
    cfg = read_config_json(path)
    config = GPTConfig(**cfg["model"])
    tokenizer = load_tokenizer(path, config.vocab_size)
    params = _check_weights_header(path / "model.safetensors", config)
    _check_memory(path, config, params, copies=2)
    model = GPT(config)
    _load_weights(model, path / "model.safetensors")
    model.to(where).eval()
    return model, tokenizer, cfg


def _load_weights(model: GPT, file: Path) -> None:
    if not file.exists():
        raise TuiGptError(f"{file}: missing; the checkpoint is incomplete, save it again")
    try:
        missing, unexpected = st.load_model(model, str(file), strict=False)
    except (SafetensorError, RuntimeError, OSError, ValueError) as exc:
        raise TuiGptError(f"{file}: corrupt weights ({str(exc).splitlines()[0][:80]})") from None
    if missing or unexpected:
        raise TuiGptError(f"{file}: weights do not match config.json ({len(missing)} missing, {len(unexpected)} extra)")
    for name, p in model.named_parameters():
        if not torch.isfinite(p).all():
            raise TuiGptError(f"{file}: {name} holds NaN or infinite values; the weights cannot be used")


def load_trainer(path: Path, data: TokenData, device: str = "auto", cfg: dict[str, Any] | None = None) -> Trainer:
    """A trainer restored to the exact step, optimizer and random state of a checkpoint.

    `cfg` is its config.json if the caller has read it already (`read_config_json`): it is not read twice.
    """
    path = resolve(path)
    cfg = read_config_json(path) if cfg is None else cfg
    config = GPTConfig(**cfg["model"])
    tconf = TrainConfig.from_dict(cfg.get("train", {}))
    tconf.device = device
    params = _check_weights_header(path / "model.safetensors", config)
    # Weights, gradients, two AdamW moments and the trainer's last good copy of weights and moments.
    _check_memory(path, config, params, copies=7)
    state = _read_json(path / "trainer.json")
    history = _read_json(path / "history.json")
    problem = _check_trainer_state(state, groups=2)
    if problem:
        raise TuiGptError(f"{path / 'trainer.json'}: corrupt ({problem}); the checkpoint cannot resume training")
    problem = _check_history(history, (config.n_layer, config.n_head))
    if problem:
        raise TuiGptError(f"{path / 'history.json'}: corrupt ({problem}); the checkpoint cannot resume training")
    opt_file = path / "optimizer.safetensors"
    if not opt_file.exists():
        raise TuiGptError(f"{opt_file}: missing; the checkpoint cannot resume training")
    safetensors_header(opt_file)  # a regular file with a sound header, before it is mapped
    trainer = Trainer(config, tconf, data)
    _load_weights(trainer.model, path / "model.safetensors")
    try:
        tensors = st.load_file(str(opt_file))
    except (SafetensorError, OSError) as exc:
        raise TuiGptError(f"{opt_file}: corrupt ({str(exc)[:80]})") from None
    try:
        template = trainer.optimizer.state_dict()
        params_by_idx = dict(enumerate(p for g in trainer.optimizer.param_groups for p in g["params"]))
        opt_state: dict[int, dict[str, torch.Tensor]] = {}
        for key, value in tensors.items():
            if key.startswith("state."):
                _, idx, name = key.split(".", 2)
                p = params_by_idx[int(idx)]
                if name != "step" and value.shape != p.shape:
                    raise ValueError(f"{key} is {list(value.shape)}, its parameter {list(p.shape)}")
                if not torch.isfinite(value).all():
                    raise ValueError(f"{key} holds NaN or infinite values")
                opt_state.setdefault(int(idx), {})[name] = value.to(trainer.device) if name != "step" else value
        groups = [
            {**hyper, "params": g["params"]}
            for hyper, g in zip(state["param_groups"], template["param_groups"], strict=True)
        ]
        trainer.optimizer.load_state_dict({"state": opt_state, "param_groups": groups})
        trainer.generator.set_state(tensors["rng.batches"])
        torch.set_rng_state(tensors["rng.torch"])
        trainer.step = state["step"]
        trainer.elapsed = float(state.get("elapsed", 0.0))
    except (KeyError, ValueError, RuntimeError, TypeError) as exc:
        raise TuiGptError(f"{path}: corrupt trainer state ({type(exc).__name__}: {str(exc)[:60]})") from None
    trainer.history = History.from_dict(history)
    trainer.keep_bytes_per_token()  # of the text it resumes on, which may not be the one it began on
    return trainer


def corpus_info(corpus: Corpus, sources: list[str]) -> CorpusInfo:
    """What config.json records about the training text, so a resume can find it again."""
    return {
        "name": corpus.name,
        "sources": [s if not Path(s).exists() else str(Path(s).resolve()) for s in sources],
        "documents": len(corpus.documents),
        "chars": corpus.chars,
    }
