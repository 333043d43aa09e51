"""Hugging Face GPT-2 directories: open them as tui-gpt models, and export tui-gpt checkpoints as them.

A GPT-2 directory holds `config.json`, `model.safetensors` (or `pytorch_model.bin`, read only
through torch's weights-only loader) and `tokenizer.json` or `vocab.json` + `merges.txt`.
Hugging Face stores the attention and MLP matrices as Conv1D, (in, out): ours are nn.Linear,
(out, in), so those four are transposed both ways. The output head is tied to the token table.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

from tui_gpt.engine.savedir import (
    checkpoint_around,
    export_folder,
    new_folders,
    read_capped,
    read_json,
    reading,
    regular_file,
    remove_new,
    write_json,
)
from tui_gpt.errors import TuiGptError, checked_path, env_path, env_path_or, reason
from tui_gpt.settings import first_problem

if TYPE_CHECKING:  # torch loads on first use: the app checks --model before its first paint
    import torch

    from tui_gpt.engine.model import GPT, GPTConfig
    from tui_gpt.engine.tokenizer import TextTokenizer

# Hugging Face's Conv1D layers: stored (in, out), transposed to and from nn.Linear's (out, in).
CONV1D = ("attn.c_attn.weight", "attn.c_proj.weight", "mlp.c_fc.weight", "mlp.c_proj.weight")
# Buffers that older GPT-2 files carry (the causal mask); not weights.
IGNORED = (".attn.bias", ".attn.masked_bias")
ACTIVATIONS = {"gelu_new": "tanh", "gelu_pytorch_tanh": "tanh", "gelu": "none"}
WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin")
FP32 = 4  # bytes per float32
# Memory per pad token (TextTokenizer.pad_to): about 0.7 kB measured with tokenizers 0.23, counted up.
PAD_BYTES = 1024


# ---- finding a model ------------------------------------------------------
def hub_cache() -> Path:
    """Where the Hugging Face hub keeps downloaded models, as huggingface_hub itself decides."""
    if folder := env_path("HF_HUB_CACHE"):
        return folder
    if folder := env_path("HF_HOME"):
        return folder / "hub"
    base = env_path_or("XDG_CACHE_HOME", "~/.cache")
    return base / "huggingface" / "hub"


def find_model(name: str) -> Path:
    """The directory for `name`: a path on disk, or a model id already in the local hub cache."""
    path = checked_path(name)
    if path.is_dir():
        return path
    if path.exists():
        raise TuiGptError(f"{name}: not a directory; pass the folder that holds config.json")
    repo = hub_cache() / f"models--{name.replace('/', '--')}"
    snapshots = repo / "snapshots"
    ref = repo / "refs" / "main"
    commit = read_capped(ref, 4096).decode("utf-8", "replace").strip() if ref.is_file() else ""
    if commit and (snapshots / commit / "config.json").exists():
        return snapshots / commit
    found = sorted(snapshots.glob("*/config.json"), key=lambda p: p.stat().st_mtime) if snapshots.is_dir() else []
    if found:
        return found[-1].parent
    raise TuiGptError(
        f"{name}: no such directory, and not in the local Hugging Face cache ({snapshots}/*); "
        f"tui-gpt never downloads: get it with `huggingface-cli download {name}`"
    )


# ---- reading ----------------------------------------------------------------
def _read_json(path: Path) -> dict[str, Any]:
    return read_json(path, f"missing; a GPT-2 directory needs {path.name}")


def num_params(c: GPTConfig) -> int:
    """Parameters of a GPT with config `c` (the output head is tied to the token table)."""
    C = c.n_embd
    per_layer = 12 * C * C + 13 * C  # attention 4C², MLP 8C², their biases and two layer norms
    return c.vocab_size * C + (c.n_positions or c.block_size) * C + c.n_layer * per_layer + 2 * C


def read_gpt_config(folder: Path, block_size: int | None = None, dropout: float = 0.0) -> GPTConfig:
    """Our GPTConfig for a Hugging Face GPT-2 config.json, checked before anything is allocated."""
    from tui_gpt.engine.model import GPTConfig

    path = folder / "config.json"
    hf = _read_json(path)
    if hf.get("model_type") != "gpt2":
        raise TuiGptError(f"{path}: model_type {hf.get('model_type')!r}; tui-gpt opens GPT-2 models only")
    found = {k: hf.get(k) for k in ("vocab_size", "n_positions", "n_layer", "n_head", "n_embd")}
    if why := first_problem(found):  # a checkpoint's bounds (nothing huge is allocated), heads that split n_embd
        raise TuiGptError(f"{path}: {why}")
    sizes = cast(dict[str, int], found)  # first_problem found each an integer within its bounds (None is not)
    if hf.get("n_inner") not in (None, 4 * sizes["n_embd"]):
        raise TuiGptError(f"{path}: n_inner {hf['n_inner']} is not 4 x n_embd; tui-gpt's MLP is 4 x wide")
    act = hf.get("activation_function", "gelu_new")
    if act not in ACTIVATIONS:
        raise TuiGptError(f"{path}: activation {act!r} is not supported (use one of {', '.join(ACTIVATIONS)})")
    unsupported = {
        "scale_attn_weights": False,
        "scale_attn_by_inverse_layer_idx": True,
        "tie_word_embeddings": False,
        "add_cross_attention": True,
    }
    for key, bad in unsupported.items():
        if hf.get(key, not bad) == bad:
            raise TuiGptError(f"{path}: {key}={bad} is not supported by tui-gpt's GPT")
    eps = hf.get("layer_norm_epsilon", 1e-5)
    if not isinstance(eps, int | float) or not 0 < eps < 1:
        raise TuiGptError(f"{path}: layer_norm_epsilon must be a small positive number, got {eps!r}")
    n_positions = sizes["n_positions"]
    config = GPTConfig(
        vocab_size=sizes["vocab_size"],
        block_size=min(block_size or n_positions, n_positions),
        n_layer=sizes["n_layer"],
        n_head=sizes["n_head"],
        n_embd=sizes["n_embd"],
        dropout=dropout,
        gelu_approximate=ACTIVATIONS[act],
        layer_norm_eps=float(eps),
        n_positions=n_positions,
    )
    check_fits(config, where=str(path))
    return config


def memory_estimate(c: GPTConfig, batch_size: int = 1, training: bool = True, pad: int = 0) -> dict[str, int]:
    """Bytes a float32 model needs: weights, causal masks, the `pad` tokens its tokenizer gains (see
    fit_tokenizer), and for training gradients, AdamW moments and activations."""
    n = num_params(c)
    out = {"weights": n * FP32, "masks": c.mask_bytes}
    if pad > 0:
        out["tokenizer padding"] = pad * PAD_BYTES
    if training:
        B, T, C, V = batch_size, c.block_size, c.n_embd, c.vocab_size
        out["gradients"] = n * FP32
        out["optimizer"] = 2 * n * FP32  # AdamW's two moments
        # Per layer and token about 34 C + 5 nh T values are kept for backward (Korthikanti et al.,
        # 2022), and the logits several times over: logits, their float copy, softmax and gradient.
        acts = B * T * (c.n_layer * (34 * C + 5 * c.n_head * T) + 4 * V)
        out["activations"] = acts * FP32
    return out


def gib(n: float) -> str:
    return f"{n / 2**30:.1f} GiB"


def check_fits(
    c: GPTConfig, batch_size: int = 1, training: bool = False, device: str = "cpu", where: str = "", pad: int = 0
) -> str:
    """One line describing the memory a model needs; a one-line refusal when it will not fit."""
    from tui_gpt.engine.trainer import available_bytes

    parts = memory_estimate(c, batch_size, training, pad)
    need = sum(parts.values())
    free = available_bytes(device)
    what = "fine-tune" if training else "load"
    detail = ", ".join(f"{k} {gib(v)}" for k, v in parts.items())
    line = f"memory to {what} {num_params(c) / 1e6:,.1f} M params: ~{gib(need)} ({detail})"
    if free is not None:
        line += f" of {gib(free)} available"
        if need > free:
            raise TuiGptError(
                f"{where + ': ' if where else ''}{line}: will not fit"
                + ("; try a smaller --batch-size or --block-size" if training else "")
            )
    return line


def _safetensors_files(folder: Path) -> list[Path]:
    """model.safetensors, or the shards that model.safetensors.index.json names: files in `folder`, never outside."""
    from tui_gpt.engine.checkpoint import MAX_TENSORS

    index = folder / "model.safetensors.index.json"
    if not index.exists():
        return [folder / "model.safetensors"]
    weight_map = _read_json(index).get("weight_map")
    if not isinstance(weight_map, dict) or not all(isinstance(v, str) for v in weight_map.values()):
        raise TuiGptError(f"{index}: weight_map must map tensor names to file names")
    if len(weight_map) > MAX_TENSORS:
        raise TuiGptError(f"{index}: weight_map lists more than {MAX_TENSORS:,} tensors")
    names = sorted(set(weight_map.values()))
    for name in names:
        # A shard is a file beside the index: a path (absolute, ../, a/b) could read any file on the machine.
        if name in ("", ".", "..") or "/" in name or "\\" in name or "\0" in name:
            raise TuiGptError(f"{index}: weight_map names {name[:60]!r}, not a file in {folder}; refused")
    return [folder / name for name in names]


def _load_tensors(folder: Path) -> dict[str, torch.Tensor]:
    """The weights of a GPT-2 directory with Hugging Face names, never unpickling arbitrary objects."""
    import torch
    from safetensors import SafetensorError
    from safetensors import torch as st

    from tui_gpt.engine.checkpoint import safetensors_header

    files = _safetensors_files(folder)
    if all(f.exists() for f in files):
        tensors: dict[str, torch.Tensor] = {}
        for f in files:
            safetensors_header(f)  # a regular file (never a FIFO) with a sound header, before it is mapped
            try:
                tensors.update(st.load_file(str(f)))
            except (SafetensorError, OSError, ValueError) as exc:
                raise TuiGptError(f"{f}: corrupt weights ({str(exc).splitlines()[0][:80]})") from None
        return tensors
    f = folder / "pytorch_model.bin"
    if not f.exists():
        raise TuiGptError(f"{folder}: no model.safetensors or pytorch_model.bin")
    with regular_file(f):  # never waits on a FIFO: torch.load would open it blocking
        pass
    try:
        # weights_only: a pickle that names anything but tensors and plain containers is refused.
        state = torch.load(f, map_location="cpu", weights_only=True, mmap=True)
    except Exception as exc:  # pickle and zip errors come in many types; all mean the same to the user
        raise TuiGptError(f"{f}: not a weights-only PyTorch file ({str(exc).splitlines()[0][:80]})") from None
    if not isinstance(state, dict) or not all(isinstance(k, str) and torch.is_tensor(v) for k, v in state.items()):
        raise TuiGptError(f"{f}: not a state dict of named tensors")
    return state


def _check_shapes(folder: Path, expected: dict[str, torch.Size]) -> None:
    """Compare the safetensors headers with the config before any weight is read."""
    import torch

    from tui_gpt.engine.checkpoint import safetensors_header

    for f in _safetensors_files(folder):
        if not f.exists():
            continue  # missing shards: _load_tensors looks for pytorch_model.bin, or says what is missing
        shapes = {_our_name(k): shape for k, (_, shape) in safetensors_header(f).items()}
        for name, shape in expected.items():
            got = shapes.get(name)
            if got is not None and name.endswith(CONV1D):
                got = got[::-1]
            if got is not None and torch.Size(got) != shape:
                raise TuiGptError(f"{f}: {name} is {tuple(got)}, config.json says {tuple(shape)}")


def _our_name(hf_name: str) -> str | None:
    """Our state-dict name for a Hugging Face GPT-2 tensor; None for what we do not keep."""
    name = hf_name.removeprefix("transformer.")
    if name == "lm_head.weight" or name.endswith(IGNORED):
        return None
    return "transformer." + name


def to_ours(tensors: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Rename (and transpose the Conv1D weights of) a Hugging Face GPT-2 state dict."""
    out = {}
    for hf_name, t in tensors.items():
        name = _our_name(hf_name)
        if name is not None:
            out[name] = t.t() if name.endswith(CONV1D) else t
    return out


def load_weights(model: GPT, folder: Path) -> None:
    """Copy a GPT-2 directory's weights into `model` in place (its optimizer keeps its parameters)."""
    import torch

    params = model.state_dict()
    params.pop("lm_head.weight")  # tied to transformer.wte.weight
    _check_shapes(folder, {k: v.shape for k, v in params.items()})
    ours = to_ours(_load_tensors(folder))
    missing = sorted(set(params) - set(ours))
    if missing:
        raise TuiGptError(f"{folder}: weights do not match config.json ({len(missing)} missing, e.g. {missing[0]})")
    with torch.no_grad():
        for name, p in params.items():
            t = ours[name]
            if t.shape != p.shape:
                raise TuiGptError(f"{folder}: {name} is {tuple(t.shape)}, config.json says {tuple(p.shape)}")
            p.copy_(t)


def fit_tokenizer(
    tokenizer: TextTokenizer,
    config: GPTConfig,
    folder: Path,
    batch_size: int = 1,
    training: bool = False,
    device: str = "cpu",
) -> str:
    """Check the tokenizer against the model; pad it when the model's vocabulary is padded (e.g. 50304).

    Returns check_fits' line with the padding counted: one pad token per id is not free (a vocab_size
    of 1 M over a 300-token tokenizer costs about 0.7 GB), so it is refused before any is added.
    """
    n, kind = tokenizer.vocab_size, tokenizer.kind
    if n > config.vocab_size:
        raise TuiGptError(f"{folder}: tokenizer has {n} tokens, the model {config.vocab_size}")
    if kind in ("char", "word") and n != config.vocab_size:  # only GPT-2's BPE comes with a padded model
        raise TuiGptError(
            f"{folder}: a {kind} tokenizer of {n} tokens for a model of {config.vocab_size}: "
            "tui-gpt exports them exactly, so this one belongs to another model"
        )
    pad = config.vocab_size - n
    line = check_fits(config, batch_size, training, device, where=str(folder), pad=pad)
    tokenizer.pad_to(config.vocab_size)
    return line


@contextmanager
def skip_init() -> Iterator[None]:
    """Build modules without drawing random weights that pretrained ones replace at once.

    Drawing GPT-2 small's 124 M random numbers takes seconds on a small CPU; as transformers'
    `no_init_weights` does, the torch.nn.init functions do nothing meanwhile. Every parameter
    must then be loaded (load_weights checks that all are).
    """
    import torch.nn.init as init

    names = ("normal_", "uniform_", "kaiming_uniform_", "kaiming_normal_", "trunc_normal_", "xavier_uniform_")
    saved = {name: getattr(init, name) for name in names}
    try:
        for name in names:
            setattr(init, name, lambda tensor, *args, **kwargs: tensor)
        yield
    finally:
        for name, fn in saved.items():
            setattr(init, name, fn)


def open_pretrained(name: str, device: str = "cpu") -> tuple[GPT, TextTokenizer, dict[str, Any]]:
    """The model and tokenizer of a GPT-2 directory (or cached model id), ready to probe."""
    from tui_gpt.engine.devices import pick_device
    from tui_gpt.engine.model import GPT
    from tui_gpt.engine.tokenizer import TextTokenizer

    where = pick_device(device)  # a device not here: one line, before anything is read
    folder = find_model(name)
    config = read_gpt_config(folder)
    tokenizer = TextTokenizer.load_pretrained(folder)
    fit_tokenizer(tokenizer, config, folder)
    with skip_init():
        model = GPT(config)
    load_weights(model, folder)
    model.to(where).eval()
    return model, tokenizer, {"model": config.to_dict(), "tokenizer": tokenizer.kind, "pretrained": str(folder)}


# ---- export -----------------------------------------------------------------
def hf_config(c: GPTConfig, eot_id: int) -> dict[str, Any]:
    """config.json for GPT2LMHeadModel with the same shapes and maths as `c`."""
    return {
        "architectures": ["GPT2LMHeadModel"],
        "model_type": "gpt2",
        "vocab_size": c.vocab_size,
        "n_positions": c.n_positions or c.block_size,
        "n_embd": c.n_embd,
        "n_layer": c.n_layer,
        "n_head": c.n_head,
        "n_inner": None,
        "activation_function": "gelu_new" if c.gelu_approximate == "tanh" else "gelu",
        "layer_norm_epsilon": c.layer_norm_eps,
        "resid_pdrop": c.dropout,
        "embd_pdrop": c.dropout,
        "attn_pdrop": c.dropout,
        "initializer_range": 0.02,
        "scale_attn_weights": True,
        "scale_attn_by_inverse_layer_idx": False,
        "reorder_and_upcast_attn": False,
        "tie_word_embeddings": True,
        "use_cache": True,
        "bos_token_id": eot_id,
        "eos_token_id": eot_id,
        "torch_dtype": "float32",
    }


def to_hf(model: GPT) -> dict[str, torch.Tensor]:
    """The model's weights with Hugging Face GPT-2 names; missing biases (bias=False) become zeros."""
    import torch

    out = {}
    for name, t in model.state_dict().items():
        if name == "lm_head.weight":  # tied: transformers re-ties it to transformer.wte.weight
            continue
        out[name] = (t.t() if name.endswith(CONV1D) else t).detach().cpu().float().contiguous()
    if not model.config.bias:  # GPT-2 always has biases: zeros are the same maths
        for name, t in list(out.items()):
            if name.endswith(CONV1D) or ".ln_" in name or name.startswith("transformer.ln_f"):
                out[name.removesuffix("weight") + "bias"] = torch.zeros(t.shape[-1])
    return out


def _hf_tokenizer_file(tokenizer: TextTokenizer, path: Path) -> None:
    """tokenizer.json as transformers reads it; char and word kinds get a decoder that joins pieces."""
    from tokenizers import Tokenizer, decoders

    from tui_gpt.engine.tokenizer import CONTINUE

    hf = Tokenizer.from_str(tokenizer.hf.to_str())
    if tokenizer.kind == "char":
        hf.decoder = decoders.Fuse()
    elif tokenizer.kind == "word":
        hf.decoder = decoders.Sequence([decoders.Replace(CONTINUE, ""), decoders.Fuse()])
    hf.save(str(path))


def export(ckpt: str | Path, out: str | Path) -> Path:
    """Write checkpoint `ckpt` to `out` as a Hugging Face GPT-2 directory; `out` must be new or empty."""
    from safetensors import SafetensorError
    from safetensors import torch as st

    from tui_gpt.engine.checkpoint import load_model
    from tui_gpt.engine.tokenizer import EOT, UNK

    ckpt, out = checked_path(ckpt), checked_path(out)
    if out.is_symlink():  # dangling or not, the rename that finishes an export cannot replace it
        raise TuiGptError(f"{out}: a symbolic link; export writes a new folder, give its real path")
    _check_outside(ckpt, out)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise TuiGptError(f"{out}: exists and is not empty; export writes a new folder")
    with reading(ckpt):  # a consistent snapshot: no save of a running train swaps files mid-read
        model, tokenizer, _ = load_model(ckpt)
    c = model.config
    if not c.causal:
        raise TuiGptError(f"{ckpt}: trained without the causal mask; GPT-2 is always causal, so it cannot be exported")
    made = new_folders(out.parent)
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        remove_new(made)
        raise TuiGptError(f"{out.parent}: cannot be made a folder ({reason(exc)})") from None
    try:
        with export_folder(out) as tmp:
            st.save_file(to_hf(model), str(tmp / "model.safetensors"), metadata={"format": "pt"})
            write_json(tmp / "config.json", hf_config(c, tokenizer.eot_id))
            write_json(
                tmp / "generation_config.json", {"bos_token_id": tokenizer.eot_id, "eos_token_id": tokenizer.eot_id}
            )
            _hf_tokenizer_file(tokenizer, tmp / "tokenizer.json")
            tok_config = {
                # The generic fast tokenizer reads any tokenizer.json: char (WordLevel), bpe, word (WordPiece).
                "tokenizer_class": "PreTrainedTokenizerFast",
                "model_max_length": c.n_positions or c.block_size,
                "bos_token": EOT,
                "eos_token": EOT,
                "clean_up_tokenization_spaces": False,
            }
            if tokenizer.hf.token_to_id(UNK) is not None:
                tok_config["unk_token"] = UNK
            write_json(tmp / "tokenizer_config.json", tok_config)
            if out.exists():
                out.rmdir()  # empty, checked above
            tmp.rename(out)
    except BaseException as exc:
        remove_new(made)  # the temp folder is export_folder's to remove
        if isinstance(exc, OSError | SafetensorError):  # a read-only or full disk: one line, nothing left behind
            raise TuiGptError(f"could not export to {out}: {reason(exc)}; nothing written") from None
        raise
    return out


def _check_outside(ckpt: Path, out: Path) -> None:
    """Refuse an OUT that is, holds or sits in a checkpoint: any file there not its own stops every later save."""
    target, ck = out.resolve(), ckpt.resolve()
    if target == ck or target in ck.parents:
        raise TuiGptError(f"{out}: is or holds the checkpoint {ckpt}; export writes a new folder outside it")
    holder = ck if ck in target.parents else checkpoint_around(target)
    if holder is not None:
        raise TuiGptError(
            f"{out}: inside the checkpoint {holder}, where it would stop every later save; export outside it"
        )
