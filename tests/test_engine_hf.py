"""Hugging Face GPT-2: open tiny random transformers models, fine-tune them, export checkpoints back.

Everything is built locally with transformers' own classes and a tiny byte-level BPE: no network.
"""

from __future__ import annotations

import json
import os
import pickle
import shutil
import signal
import struct
import subprocess
import sys
import threading
import time
from contextlib import suppress
from pathlib import Path

import pytest
import torch

from tests.conftest import TINY_TEXT
from tui_gpt.commands.cli import main
from tui_gpt.engine import hf
from tui_gpt.engine.session import RunSpec, open_run

transformers = pytest.importorskip("transformers")
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers  # noqa: E402

EOT = "<|endoftext|>"
PROMPT = "The fox ran to the door, and the hen found a seed."


def _tiny_bpe() -> Tokenizer:
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=300,
        special_tokens=[EOT],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator([TINY_TEXT], trainer=trainer)
    return tok


@pytest.fixture(scope="module")
def tiny_gpt2(tmp_path_factory):
    """A random 2-layer GPT-2 saved by transformers, with tokenizer.json and vocab.json + merges.txt."""
    folder = tmp_path_factory.mktemp("tiny-gpt2")
    tok = _tiny_bpe()
    tok.save(str(folder / "tokenizer.json"))
    tok.model.save(str(folder))  # vocab.json, merges.txt
    torch.manual_seed(0)
    config = transformers.GPT2Config(
        n_layer=2,
        n_head=2,
        n_embd=32,
        vocab_size=tok.get_vocab_size(),
        n_positions=48,
        bos_token_id=tok.token_to_id(EOT),
        eos_token_id=tok.token_to_id(EOT),
    )
    model = transformers.GPT2LMHeadModel(config)
    model.save_pretrained(folder)
    return folder


def _hf_model(folder):
    return transformers.GPT2LMHeadModel.from_pretrained(folder, attn_implementation="eager").eval()


def test_logits_and_attention_match_transformers(tiny_gpt2):
    model, tok, _ = hf.open_pretrained(str(tiny_gpt2))
    ref = _hf_model(tiny_gpt2)
    assert tok.kind == "gpt2" and model.config.gelu_approximate == "tanh"
    ids = tok.encode(PROMPT)
    assert ids == Tokenizer.from_file(str(tiny_gpt2 / "tokenizer.json")).encode(PROMPT).ids
    x = torch.tensor([ids])
    with torch.no_grad():
        ours, _, attns = model(x, want_attn=True)
        theirs = ref(x, output_attentions=True)
    assert (ours - theirs.logits).abs().max().item() < 1e-4
    assert len(attns) == len(theirs.attentions) == 2
    for a, b in zip(attns, theirs.attentions, strict=True):
        assert a.shape == b.shape == (1, 2, len(ids), len(ids))
        assert (a - b).abs().max().item() < 1e-5


def test_vocab_and_merges_without_tokenizer_json(tiny_gpt2, tmp_path):
    folder = tmp_path / "m"
    shutil.copytree(tiny_gpt2, folder)
    (folder / "tokenizer.json").unlink()
    _, tok, _ = hf.open_pretrained(str(folder))
    assert tok.encode(PROMPT) == Tokenizer.from_file(str(tiny_gpt2 / "tokenizer.json")).encode(PROMPT).ids
    assert tok.decode(tok.encode(PROMPT)) == PROMPT


def test_pytorch_bin_is_read_weights_only(tiny_gpt2, tmp_path, one_line_error):
    folder = tmp_path / "bin"
    shutil.copytree(tiny_gpt2, folder)
    (folder / "model.safetensors").unlink()
    # What older transformers wrote (version 5 writes only safetensors): a pickled state dict.
    torch.save(_hf_model(tiny_gpt2).state_dict(), folder / "pytorch_model.bin")
    model, tok, _ = hf.open_pretrained(str(folder))
    x = torch.tensor([tok.encode(PROMPT)])
    with torch.no_grad():
        assert (model(x)[0] - _hf_model(tiny_gpt2)(x).logits).abs().max().item() < 1e-4

    class Evil:  # unpickling this would run a command
        def __reduce__(self):
            return (print, ("pwned",))

    (folder / "pytorch_model.bin").write_bytes(pickle.dumps({"x": Evil()}))
    with pytest.raises(hf.TuiGptError) as exc:
        hf.open_pretrained(str(folder))
    one_line_error(exc.value, "pytorch_model.bin")


def test_bare_name_is_looked_up_in_the_local_cache_only(tiny_gpt2, tmp_path, monkeypatch, one_line_error):
    monkeypatch.delenv("HF_HUB_CACHE", raising=False)
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    repo = tmp_path / "hf" / "hub" / "models--acme--tiny-gpt2"
    shutil.copytree(tiny_gpt2, repo / "snapshots" / "abc123")
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text("abc123")
    assert hf.find_model("acme/tiny-gpt2") == repo / "snapshots" / "abc123"
    with pytest.raises(hf.TuiGptError) as exc:
        hf.find_model("gpt2")
    msg = one_line_error(exc.value, "gpt2")
    assert str(tmp_path / "hf" / "hub" / "models--gpt2" / "snapshots") in msg
    assert "huggingface-cli download gpt2" in msg
    assert main(["generate", "--model", "acme/tiny-gpt2", "The", "-n", "5", "--seed", "1"]) == 0
    assert main(["complete", "--model", "nope/missing", "The"]) == 2


@pytest.mark.parametrize(
    "change, words",
    [
        ({"n_embd": 2**15, "n_head": 2, "n_layer": 512}, "will not fit"),
        ({"n_embd": 2**20, "n_head": 2}, "n_embd must be an integer in 1..32768"),
        ({"n_layer": 10**12}, "n_layer must be an integer in 1..512"),
        ({"n_head": 3}, "divisible"),
        ({"vocab_size": -1}, "vocab_size must be an integer in 1..1048576"),
        ({"vocab_size": 4_000_000, "n_embd": 1, "n_head": 1}, "vocab_size must be an integer in 1..1048576"),
        ({"n_positions": 20_000}, "n_positions must be an integer in 1..16384"),
        ({"n_layer": True}, "n_layer must be an integer"),
        ({"model_type": "llama"}, "GPT-2 models only"),
        ({"activation_function": "relu"}, "activation"),
    ],
)
def test_hostile_configs_are_one_line_before_allocating(tiny_gpt2, tmp_path, one_line_error, change, words):
    folder = tmp_path / "bad"
    shutil.copytree(tiny_gpt2, folder)
    cfg = json.loads((folder / "config.json").read_text())
    (folder / "config.json").write_text(json.dumps({**cfg, **change}))
    with pytest.raises(hf.TuiGptError) as exc:
        hf.open_pretrained(str(folder))
    assert words in one_line_error(exc.value, "config.json")


def test_weights_that_do_not_match_the_config(tiny_gpt2, tmp_path, one_line_error):
    folder = tmp_path / "wide"
    shutil.copytree(tiny_gpt2, folder)
    cfg = json.loads((folder / "config.json").read_text())
    (folder / "config.json").write_text(json.dumps({**cfg, "n_embd": 64}))
    with pytest.raises(hf.TuiGptError) as exc:
        hf.open_pretrained(str(folder))
    one_line_error(exc.value, "model.safetensors")


def test_one_fine_tuning_step_lowers_the_loss(tiny_gpt2, tiny_file):
    spec = RunSpec(
        sources=[str(tiny_file)],
        model=str(tiny_gpt2),
        block_size=32,
        train={"batch_size": 4, "lr": 1e-3, "warmup_steps": 0, "dtype": "float32", "device": "cpu"},
    )
    run = open_run(spec)
    assert "memory to fine-tune" in run.memory and "available" in run.memory
    assert run.tokenizer.kind == "gpt2" and run.trainer.model.config.block_size == 32
    ref = _hf_model(tiny_gpt2)
    x = torch.tensor([run.tokenizer.encode(TINY_TEXT[:200])[:32]])
    with torch.no_grad():
        assert (run.trainer.model(x)[0] - ref(x).logits).abs().max().item() < 1e-4
    before = run.trainer.step_on(x[0].tolist())
    after = run.trainer.step_on(x[0].tolist())
    assert after < before


def test_fine_tuning_defaults_come_from_args():
    from tui_gpt.commands.cli import parser_train

    spec = RunSpec.from_args(parser_train().parse_args(["--model", "gpt2"]))
    assert spec.model == "gpt2" and spec.block_size == 128
    assert spec.train.lr == 5e-5 and spec.train.batch_size == 1
    plain = RunSpec.from_args(parser_train().parse_args(["--lr", "3e-3"]))
    assert plain.block_size == 64 and plain.train.lr == 3e-3 and plain.train.batch_size == 12
    typed = RunSpec.from_args(parser_train().parse_args(["--model", "gpt2", "--lr", "1e-4", "--block-size", "256"]))
    assert (typed.train.lr, typed.block_size, typed.train.batch_size) == (1e-4, 256, 1)  # typed beats fine-tuning


@pytest.mark.parametrize("kind", ["char", "bpe", "word"])
def test_export_loads_in_transformers_and_back(make_spec, tmp_path, kind):
    run = open_run(make_spec(tokenizer=kind, vocab_size={"char": None, "bpe": 300, "word": 200}[kind], block_size=48))
    for _ in run.trainer.run(steps=3):
        pass
    ckpt = run.save(tmp_path / "ckpt")
    out = tmp_path / "hf"
    assert main(["export", str(ckpt), str(out)]) == 0
    files = ("config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json", "generation_config.json")
    assert all((out / name).exists() for name in files)

    ref = transformers.GPT2LMHeadModel.from_pretrained(out, attn_implementation="eager").eval()
    hf_tok = transformers.AutoTokenizer.from_pretrained(out)
    text = "The hen found a seed and planted it."
    ids = run.tokenizer.encode(text)
    assert hf_tok(text)["input_ids"] == ids
    assert hf_tok.decode(ids) == text
    model = run.trainer.model.eval()
    x = torch.tensor([ids])
    with torch.no_grad():
        ours = model(x)[0]
        assert (ours - ref(x).logits).abs().max().item() < 1e-4
        again, tok, _ = hf.open_pretrained(str(out))
        assert torch.equal(again(x)[0], ours)
    assert tok.encode(text) == ids


def test_export_refuses_what_gpt2_cannot_express(make_spec, tmp_path, one_line_error):
    run = open_run(make_spec(causal=False))
    ckpt = run.save(tmp_path / "ckpt")
    with pytest.raises(hf.TuiGptError) as exc:
        hf.export(ckpt, tmp_path / "hf")
    one_line_error(exc.value, "causal")
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "x").write_text("mine")
    with pytest.raises(hf.TuiGptError) as exc:
        hf.export(ckpt, tmp_path / "full")
    one_line_error(exc.value, "not empty")


def test_a_padded_vocabulary_gets_pad_tokens(tiny_gpt2, tmp_path):
    from tui_gpt.probes.predict import predict

    folder = tmp_path / "padded"
    shutil.copytree(tiny_gpt2, folder)
    (folder / "model.safetensors").unlink()
    cfg = json.loads((folder / "config.json").read_text())
    n = cfg["vocab_size"] + 5  # as fine-tunes that pad GPT-2's 50257 to 50304 do
    torch.manual_seed(1)
    transformers.GPT2LMHeadModel(transformers.GPT2Config(**{**cfg, "vocab_size": n})).save_pretrained(folder)
    model, tok, _ = hf.open_pretrained(str(folder))
    assert tok.vocab_size == n and tok.token_text(n - 1) == f"<|pad_{n - 1}|>"
    assert tok.encode(PROMPT) == Tokenizer.from_file(str(tiny_gpt2 / "tokenizer.json")).encode(PROMPT).ids
    pred = predict(model, tok, tok.encode(PROMPT), k=n, attention=False)
    assert len(pred.guesses) == n


def test_the_hub_gpt2_layout(tiny_gpt2, tmp_path):
    """The gpt2 file on the hub: no `transformer.` prefix, and each layer's causal-mask buffer."""
    from safetensors.torch import load_file, save_file

    folder = tmp_path / "hub"
    shutil.copytree(tiny_gpt2, folder)
    tensors = {k.removeprefix("transformer."): v for k, v in load_file(str(folder / "model.safetensors")).items()}
    for i in range(2):
        tensors[f"h.{i}.attn.bias"] = torch.ones(1, 1, 48, 48).tril()
    save_file(tensors, str(folder / "model.safetensors"), metadata={"format": "pt"})
    model, tok, _ = hf.open_pretrained(str(folder))
    x = torch.tensor([tok.encode(PROMPT)])
    with torch.no_grad():
        assert (model(x)[0] - _hf_model(tiny_gpt2)(x).logits).abs().max().item() < 1e-4


@pytest.mark.parametrize(
    "change", [{"gelu_approximate": "erf"}, {"layer_norm_eps": -1}, {"n_positions": 4}, {"n_positions": "x"}]
)
def test_checkpoint_gpt2_options_are_checked(make_spec, tmp_path, one_line_error, change):
    from tui_gpt.engine.checkpoint import load_model

    ckpt = open_run(make_spec()).save(tmp_path / "ckpt")
    cfg = json.loads((ckpt / "config.json").read_text())
    cfg["model"].update(change)
    (ckpt / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(hf.TuiGptError) as exc:
        load_model(ckpt)
    one_line_error(exc.value, next(iter(change)))


# ---- hostile --model folders: one line, before anything blocks or is allocated ------------------


def _copy(tiny_gpt2, tmp_path, name="m"):
    return shutil.copytree(tiny_gpt2, tmp_path / name)


def _fifo(path):
    """Replace `path` with a FIFO. A reader blocked on it (in Rust, where no signal reaches Python)
    is let go after 15 s, so that a regression fails the test instead of hanging it."""
    path.unlink(missing_ok=True)
    os.mkfifo(path)

    def release():
        with suppress(OSError):
            os.close(os.open(path, os.O_WRONLY | os.O_NONBLOCK))

    timer = threading.Timer(15, release)
    timer.daemon = True
    timer.start()


def _complete_fails(folder, capsys, *words):
    """`tui-gpt complete --model folder` exits 2 with one line naming `words`, at once."""
    capsys.readouterr()  # what the test's setup printed
    start = time.monotonic()
    assert main(["complete", "--model", str(folder), "The fox"]) == 2
    assert time.monotonic() - start < 10
    err = capsys.readouterr().err
    assert err.startswith("tui-gpt: error: ") and err.count("\n") == 1, err
    assert all(w in err for w in words), err
    return err


@pytest.mark.parametrize(
    "name",
    [
        "config.json",
        "model.safetensors",
        "model.safetensors.index.json",
        "pytorch_model.bin",
        "tokenizer.json",
        "vocab.json",
        "merges.txt",
    ],
)
def test_a_fifo_in_a_model_folder_is_one_line_at_once(tiny_gpt2, tmp_path, capsys, no_hang, name):
    folder = _copy(tiny_gpt2, tmp_path)
    if name == "pytorch_model.bin":
        torch.save(_hf_model(tiny_gpt2).state_dict(), folder / "pytorch_model.bin")
        (folder / "model.safetensors").unlink()
    if name in ("vocab.json", "merges.txt"):
        (folder / "tokenizer.json").unlink()
    _fifo(folder / name)
    _complete_fails(folder, capsys, name, "not a regular file")


def _edit_json(path, change):
    data = json.loads(path.read_text())
    change(data)
    path.write_text(json.dumps(data))


def _sharded(tiny_gpt2, tmp_path, weight_map):
    """The tiny model with a model.safetensors.index.json whose weight_map is `weight_map`."""
    folder = _copy(tiny_gpt2, tmp_path)
    (folder / "model.safetensors.index.json").write_text(json.dumps({"metadata": {}, "weight_map": weight_map}))
    return folder


def test_a_config_nested_100000_deep_is_one_line(tiny_gpt2, tmp_path, capsys):
    folder = _copy(tiny_gpt2, tmp_path)
    (folder / "config.json").write_text("[" * 100_000 + "]" * 100_000)
    _complete_fails(folder, capsys, "config.json", "RecursionError")


@pytest.mark.parametrize("weight_map", [["model.safetensors"], 7, None, {"transformer.wte.weight": 3}])
def test_a_weight_map_of_the_wrong_shape_is_one_line(tiny_gpt2, tmp_path, capsys, weight_map):
    folder = _sharded(tiny_gpt2, tmp_path, weight_map)
    _complete_fails(folder, capsys, "model.safetensors.index.json", "weight_map must map tensor names to file names")


@pytest.mark.parametrize("where", ["absolute", "parent", "sub"])
def test_a_weight_map_that_points_outside_the_folder_is_refused(tiny_gpt2, tmp_path, capsys, where):
    outside = _copy(tiny_gpt2, tmp_path, "outside") / "model.safetensors"  # real weights: they would load
    name = {"absolute": str(outside), "parent": "../outside/model.safetensors", "sub": "x/model.safetensors"}[where]
    folder = _sharded(tiny_gpt2, tmp_path, {"transformer.wte.weight": name})
    (folder / "model.safetensors").unlink()
    (folder / "x").mkdir()
    shutil.copy(outside, folder / "x" / "model.safetensors")
    _complete_fails(folder, capsys, "model.safetensors.index.json", repr(name[:60]), "refused")


def test_shards_inside_the_folder_load(tiny_gpt2, tmp_path):
    from safetensors.torch import load_file, save_file

    folder = _copy(tiny_gpt2, tmp_path)
    tensors = load_file(str(folder / "model.safetensors"))
    (folder / "model.safetensors").unlink()
    names = sorted(tensors)
    shards = {"model-00001-of-00002.safetensors": names[:10], "model-00002-of-00002.safetensors": names[10:]}
    for shard, keys in shards.items():
        save_file({k: tensors[k] for k in keys}, str(folder / shard), metadata={"format": "pt"})
    weight_map = {k: shard for shard, keys in shards.items() for k in keys}
    (folder / "model.safetensors.index.json").write_text(json.dumps({"weight_map": weight_map}))
    model, tok, _ = hf.open_pretrained(str(folder))
    x = torch.tensor([tok.encode(PROMPT)])
    with torch.no_grad():
        assert (model(x)[0] - _hf_model(tiny_gpt2)(x).logits).abs().max().item() < 1e-4


def test_a_pytorch_bin_with_integer_keys_is_one_line(tiny_gpt2, tmp_path, capsys):
    folder = _copy(tiny_gpt2, tmp_path)
    (folder / "model.safetensors").unlink()
    state = _hf_model(tiny_gpt2).state_dict()
    torch.save({i: t for i, t in enumerate(state.values())}, folder / "pytorch_model.bin")
    _complete_fails(folder, capsys, "pytorch_model.bin", "not a state dict of named tensors")


def test_token_ids_beyond_the_vocabulary_are_one_line(tiny_gpt2, tmp_path, capsys):
    folder = _copy(tiny_gpt2, tmp_path)
    _edit_json(folder / "tokenizer.json", lambda t: t["model"]["vocab"].update(T=5000))  # "The fox" -> 5000
    _complete_fails(folder, capsys, "tokenizer.json", "ids are not 0..299", "5000")


def test_a_tokenizer_whose_regex_backtracks_is_one_line(tiny_gpt2, tmp_path, capfd):
    folder = _copy(tiny_gpt2, tmp_path)
    split = {"type": "Split", "pattern": {"Regex": "(a|a)+$"}, "behavior": "Isolated", "invert": False}
    _edit_json(folder / "tokenizer.json", lambda t: t.update(pre_tokenizer=split))
    capfd.readouterr()
    assert main(["complete", "--model", str(folder), "a" * 40 + "b"]) == 2
    err = capfd.readouterr().err
    ours = [line for line in err.splitlines() if line.startswith("tui-gpt")]
    assert ours == [
        "tui-gpt: error: the tokenizer failed on this text (Onig: Regex search error: retry-limit-in-match over)"
    ]
    assert "Traceback" not in err


def test_a_foreign_smaller_char_tokenizer_is_refused(tiny_gpt2, tmp_path, capsys, make_spec):
    ckpt = open_run(make_spec(tokenizer="char")).save(tmp_path / "ckpt")  # a few dozen characters
    assert main(["export", str(ckpt), str(tmp_path / "chars")]) == 0
    folder = _copy(tiny_gpt2, tmp_path)
    shutil.copy(tmp_path / "chars" / "tokenizer.json", folder / "tokenizer.json")  # 300 ids in the model
    _complete_fails(folder, capsys, str(folder), "a char tokenizer of", "for a model of 300", "another model")


# ---- export: a killed one leaves nothing for good -----------------------------------------------

STALLED_EXPORT = """
import sys, time
from tui_gpt.engine import hf

def stall(path, obj):  # the export stops half-way, its weights written, until it is killed
    print("writing", flush=True)
    time.sleep(600)

hf.write_json = stall
hf.export(sys.argv[1], sys.argv[2])
"""


def test_the_next_export_removes_what_a_killed_one_left_but_not_a_live_ones(make_spec, tmp_path):
    ckpt = open_run(make_spec()).save(tmp_path / "ckpt")
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    args = [sys.executable, "-c", STALLED_EXPORT, str(ckpt), str(tmp_path / "hf")]
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, text=True, env=env)
    try:
        assert proc.stdout.readline() == "writing\n"
        (tmp,) = tmp_path.glob(".hf.export-*")
        assert (tmp / "model.safetensors").exists()
        os.utime(tmp, (time.time() - 3600, time.time() - 3600))  # idle long enough to look abandoned
        assert main(["export", str(ckpt), str(tmp_path / "hf2")]) == 0
        assert tmp.exists(), "an export still writing lost its folder"
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    assert tmp.exists()  # what a killed export leaves...
    foreign = tmp_path / ".notes.export-mine"  # ...and a folder of the user's that only looks like one
    foreign.mkdir()
    (foreign / "notes.txt").write_text("mine")
    os.utime(foreign, (time.time() - 3600, time.time() - 3600))
    assert main(["export", str(ckpt), str(tmp_path / "hf3")]) == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == [".notes.export-mine", "ckpt", "hf2", "hf3"]


# ---- sizes: bounded as a checkpoint's are, and every byte counted before it is allocated ---------


def test_a_safetensors_header_of_200000_empty_entries_is_one_line_at_once(tiny_gpt2, tmp_path, capsys):
    folder = _copy(tiny_gpt2, tmp_path)
    entries = {f"t{i}": {"dtype": "F32", "shape": [0], "data_offsets": [0, 0]} for i in range(200_000)}
    header = json.dumps(entries).encode()
    (folder / "model.safetensors").write_bytes(struct.pack("<Q", len(header)) + header)
    _complete_fails(folder, capsys, "model.safetensors", "more than 32,768 tensors")


def test_tokenizer_padding_and_masks_are_counted_before_they_are_made(tiny_gpt2, tmp_path, monkeypatch, one_line_error):
    from tui_gpt.engine.tokenizer import TextTokenizer

    folder = _copy(tiny_gpt2, tmp_path)
    cfg = json.loads((folder / "config.json").read_text())
    # A model of 1 M ids over a 300-token tokenizer: 1 M pad tokens, about 0.7 GB, for 4 MB of weights.
    (folder / "config.json").write_text(json.dumps({**cfg, "vocab_size": 1 << 20, "n_embd": 2, "n_head": 1}))
    config = hf.read_gpt_config(folder)
    tok = TextTokenizer.load_pretrained(folder)
    pad = (1 << 20) - tok.vocab_size
    parts = hf.memory_estimate(config, training=False, pad=pad)
    assert parts["tokenizer padding"] == pad * hf.PAD_BYTES > 100 * parts["weights"]
    assert parts["masks"] == 3 * 48 * 48  # one per layer, and one more while the last is built
    room = 10 * parts["weights"]  # the weights fit, the padding does not
    monkeypatch.setattr("tui_gpt.engine.trainer.available_bytes", lambda device="cpu": room)
    with pytest.raises(hf.TuiGptError) as exc:
        hf.fit_tokenizer(tok, config, folder)
    assert "tokenizer padding" in one_line_error(exc.value, str(folder)) and "will not fit" in str(exc.value)
    assert tok.vocab_size == 300, "padded before the refusal"


@pytest.mark.parametrize("out", ["link-to-empty", "dangling", "under-a-file"])
def test_a_symlinked_or_dangling_out_is_one_line(make_spec, tmp_path, capsys, out):
    ckpt = open_run(make_spec()).save(tmp_path / "ckpt")
    (tmp_path / "empty").mkdir()
    (tmp_path / "file").write_text("mine")
    (tmp_path / "link-to-empty").symlink_to(tmp_path / "empty")
    (tmp_path / "dangling").symlink_to(tmp_path / "nowhere")
    target = {"under-a-file": tmp_path / "file" / "hf"}.get(out, tmp_path / out)
    before = sorted(os.listdir(tmp_path))
    assert main(["export", str(ckpt), str(target)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("tui-gpt: error: ") and err.count("\n") == 1, err
    assert ("symbolic link" if out != "under-a-file" else "cannot be made a folder") in err
    assert sorted(os.listdir(tmp_path)) == before and not list((tmp_path / "empty").iterdir())
    assert (tmp_path / "file").read_text() == "mine"
