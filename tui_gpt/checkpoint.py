"""Checkpoints: a directory of safetensors and JSON, written atomically, loaded without pickle.

Layout of a checkpoint directory:
    model.safetensors      the weights
    optimizer.safetensors  AdamW moments, plus the random-number state that resuming needs
    config.json            model, training and corpus settings
    tokenizer.json         the Hugging Face tokenizer
    trainer.json           step, elapsed time and optimizer hyper-parameters
    history.json           the loss curve
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors import torch as st

from tui_gpt.corpus import Corpus
from tui_gpt.dataset import TokenData
from tui_gpt.errors import TuiGptError
from tui_gpt.model import GPT, GPTConfig
from tui_gpt.savedir import FILES, FORMAT, aside, check_out, remove_orphans, temp_prefix
from tui_gpt.tokenizer import TextTokenizer
from tui_gpt.trainer import History, TrainConfig, Trainer

__all__ = ["FILES", "FORMAT", "load_model", "load_trainer", "read_config", "resolve", "save_checkpoint"]


def _write_json(path: Path, obj: object) -> None:
    path.write_text(json.dumps(obj, indent=2) + "\n", encoding="utf-8")


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def save_checkpoint(out: Path, trainer: Trainer, tokenizer: TextTokenizer, corpus_info: dict) -> Path:
    """Write a complete checkpoint to `out`, replacing any previous one only once it is whole.

    `out` must be new, empty or a tui-gpt checkpoint: anything else is refused, never overwritten.
    """
    out = check_out(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    remove_orphans(out)
    tmp = Path(tempfile.mkdtemp(prefix=temp_prefix(out), dir=out.parent))
    try:
        model = trainer.model
        st.save_model(model, str(tmp / "model.safetensors"))
        opt_tensors, hyper = _optimizer_tensors(trainer)
        opt_tensors["rng.batches"] = trainer.generator.get_state()
        opt_tensors["rng.torch"] = torch.get_rng_state()
        st.save_file(
            {k: v.detach().cpu().contiguous() for k, v in opt_tensors.items()}, str(tmp / "optimizer.safetensors")
        )
        _write_json(
            tmp / "config.json",
            {
                "format": FORMAT,
                "model": model.config.to_dict(),
                "train": trainer.config.to_dict(),
                "tokenizer": tokenizer.kind,
                "corpus": corpus_info,
            },
        )
        tokenizer.save(tmp / "tokenizer.json")
        _write_json(tmp / "trainer.json", {"step": trainer.step, "elapsed": trainer.elapsed, "param_groups": hyper})
        _write_json(tmp / "history.json", trainer.history.to_dict())
        for name in FILES:
            with open(tmp / name, "rb") as f:
                os.fsync(f.fileno())
        _fsync_dir(tmp)
        # Swap directories: the old checkpoint is removed only after the new one is in place.
        old = aside(out)
        if out.exists():
            if old.exists():
                shutil.rmtree(old)
            out.rename(old)
        # else: an earlier save was interrupted; its .old stays until this one is in place
        tmp.rename(out)
        _fsync_dir(out.parent)
        if old.exists():
            shutil.rmtree(old)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out


def _optimizer_tensors(trainer: Trainer) -> tuple[dict[str, torch.Tensor], list[dict]]:
    sd = trainer.optimizer.state_dict()
    tensors: dict[str, torch.Tensor] = {}
    for idx, state in sd["state"].items():
        for key, value in state.items():
            tensors[f"state.{idx}.{key}"] = value if torch.is_tensor(value) else torch.tensor(value)
    hyper = [{k: v for k, v in g.items() if k != "params"} for g in sd["param_groups"]]
    return tensors, hyper


def resolve(path: Path) -> Path:
    """The checkpoint directory to read: `path`, or what an interrupted save left of it."""
    path = Path(path).expanduser()
    if not path.exists():
        old = aside(path)
        if old.is_dir():  # a save was interrupted between its two renames
            return old
        raise TuiGptError(f"{path}: no such checkpoint; pass a directory written by 'tui-gpt train --out'")
    if not path.is_dir():
        raise TuiGptError(f"{path}: not a checkpoint directory; pass the folder that holds model.safetensors")
    return path


def _read_json(path: Path) -> dict:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise TuiGptError(f"{path}: missing; the checkpoint is incomplete, save it again") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise TuiGptError(f"{path}: corrupt ({type(exc).__name__}); the checkpoint cannot be used") from None
    if not isinstance(data, dict):
        raise TuiGptError(f"{path}: corrupt (not a JSON object); the checkpoint cannot be used")
    return data


def read_config(path: Path) -> dict:
    """The checkpoint's config.json, checked."""
    path = resolve(path)
    cfg = _read_json(path / "config.json")
    if cfg.get("format") != FORMAT:
        raise TuiGptError(f"{path}: not a tui-gpt checkpoint (format {cfg.get('format')!r})")
    problem = _check_model(cfg.get("model"))
    if problem:
        raise TuiGptError(f"{path / 'config.json'}: corrupt model settings ({problem}); the checkpoint cannot be used")
    return cfg


def _check_model(model: object) -> str | None:
    """What is wrong with a config.json "model" entry, or None."""
    if not isinstance(model, dict):
        return "no model section"
    try:
        config = GPTConfig(**model)
    except TypeError as exc:
        return str(exc)
    for name in ("vocab_size", "block_size", "n_layer", "n_head", "n_embd"):
        value = getattr(config, name)
        if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
            return f"{name} must be a positive integer, got {value!r}"
    if config.n_embd % config.n_head:
        return f"n_embd {config.n_embd} is not divisible by n_head {config.n_head}"
    if not isinstance(config.dropout, int | float) or not 0 <= config.dropout < 1:
        return f"dropout must be a number in [0, 1), got {config.dropout!r}"
    if not isinstance(config.causal, bool) or not isinstance(config.bias, bool):
        return "causal and bias must be true or false"
    if config.gelu_approximate not in ("none", "tanh"):
        return f"gelu_approximate must be none or tanh, got {config.gelu_approximate!r}"
    if not isinstance(config.layer_norm_eps, int | float) or not 0 < config.layer_norm_eps < 1:
        return f"layer_norm_eps must be a small positive number, got {config.layer_norm_eps!r}"
    n_pos = config.n_positions
    if n_pos is not None and (not isinstance(n_pos, int) or isinstance(n_pos, bool) or n_pos < config.block_size):
        return f"n_positions must be an integer of at least block_size, got {n_pos!r}"
    return None


def load_model(path: Path, device: str = "cpu") -> tuple[GPT, TextTokenizer, dict]:
    """The model and tokenizer of a checkpoint, for probing; never unpickles."""
    path = resolve(path)
    cfg = read_config(path)
    tokenizer = TextTokenizer.load(path / "tokenizer.json")
    model = GPT(GPTConfig(**cfg["model"]))
    _load_weights(model, path / "model.safetensors")
    model.to(device).eval()
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


def load_trainer(path: Path, data: TokenData, device: str = "auto") -> Trainer:
    """A trainer restored to the exact step, optimizer and random state of a checkpoint."""
    path = resolve(path)
    cfg = read_config(path)
    tconf = TrainConfig.from_dict(cfg.get("train", {}))
    tconf.device = device
    trainer = Trainer(GPTConfig(**cfg["model"]), tconf, data)
    _load_weights(trainer.model, path / "model.safetensors")
    state = _read_json(path / "trainer.json")
    try:
        tensors = st.load_file(str(path / "optimizer.safetensors"))
    except FileNotFoundError:
        raise TuiGptError(f"{path / 'optimizer.safetensors'}: missing; the checkpoint cannot resume training") from None
    except (SafetensorError, OSError) as exc:
        raise TuiGptError(f"{path / 'optimizer.safetensors'}: corrupt ({str(exc)[:80]})") from None
    try:
        template = trainer.optimizer.state_dict()
        opt_state: dict[int, dict[str, torch.Tensor]] = {}
        for key, value in tensors.items():
            if key.startswith("state."):
                _, idx, name = key.split(".", 2)
                opt_state.setdefault(int(idx), {})[name] = value.to(trainer.device) if name != "step" else value
        groups = [
            {**hyper, "params": g["params"]}
            for hyper, g in zip(state["param_groups"], template["param_groups"], strict=True)
        ]
        trainer.optimizer.load_state_dict({"state": opt_state, "param_groups": groups})
        trainer.generator.set_state(tensors["rng.batches"])
        torch.set_rng_state(tensors["rng.torch"])
        trainer.step = int(state["step"])
        trainer.elapsed = float(state.get("elapsed", 0.0))
    except (KeyError, ValueError, RuntimeError, TypeError) as exc:
        raise TuiGptError(f"{path}: corrupt trainer state ({type(exc).__name__}: {str(exc)[:60]})") from None
    trainer.history = History.from_dict(_read_json(path / "history.json"))
    return trainer


def corpus_info(corpus: Corpus, sources: list[str]) -> dict:
    """What config.json records about the training text, so a resume can find it again."""
    return {
        "name": corpus.name,
        "sources": [s if not Path(s).exists() else str(Path(s).resolve()) for s in sources],
        "documents": len(corpus.documents),
        "chars": corpus.chars,
    }
