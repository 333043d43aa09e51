"""Hostile checkpoints: every file and value is checked before anything is allocated or read in full."""

from __future__ import annotations

import json
import math
import os
import shutil
import struct
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from tui_gpt.commands.cli import parser_train
from tui_gpt.engine import checkpoint
from tui_gpt.engine.checkpoint import load_model, load_trainer, read_config_json
from tui_gpt.engine.savedir import read_capped
from tui_gpt.engine.session import RunSpec, open_run
from tui_gpt.engine.trainer import MAX_RESTORES
from tui_gpt.errors import TuiGptError

pytestmark = pytest.mark.usefixtures("no_hang")  # from conftest: a hostile file that blocks fails, never hangs


@pytest.fixture
def saved(tmp_path, fables_run) -> Path:
    list(fables_run.trainer.run(steps=2))
    return fables_run.save(tmp_path / "ck")


def edit_json(path: Path, change) -> None:
    data = json.loads(path.read_text())
    change(data)
    path.write_text(json.dumps(data))


def resume(ckpt: Path, **train) -> object:
    return open_run(RunSpec(resume=str(ckpt), train={"device": "cpu", **train}, given=sorted(train)))


# ---- sizes in config.json: refused before the model is built -----------------------------------


@pytest.mark.parametrize(
    "change",
    [{"n_layer": 100_000}, {"block_size": 100_000}, {"n_embd": 1_000_000}, {"vocab_size": 10**9}, {"n_head": 0}],
    ids=["n_layer", "block_size", "n_embd", "vocab_size", "n_head"],
)
def test_absurd_sizes_are_one_line_at_once(saved, fables_run, change, one_line_error):
    edit_json(saved / "config.json", lambda c: c["model"].update(change))
    for load in (lambda: load_model(saved), lambda: resume(saved), lambda: read_config_json(saved)):
        with pytest.raises(TuiGptError) as info:
            load()
        one_line_error(info.value, "config.json")


@pytest.mark.parametrize("change", [{"block_size": 32}, {"n_layer": 2}, {"vocab_size": 80}])
def test_sizes_that_disagree_with_the_weights_are_refused_from_the_header(saved, change, one_line_error, monkeypatch):
    edit_json(saved / "config.json", lambda c: c["model"].update(change))
    built = []
    monkeypatch.setattr(checkpoint.GPT, "__init__", _spy(checkpoint.GPT.__init__, built))
    with pytest.raises(TuiGptError) as info:
        load_model(saved)
    name = "tokenizer.json" if "vocab_size" in change else "model.safetensors"
    one_line_error(info.value, name)
    assert not [d for d in built if d != "meta"], "a model was built before its sizes were checked"


def _spy(init, built):
    def wrapped(self, config):
        built.append(str(torch.get_default_device()))
        init(self, config)

    return wrapped


def test_a_model_too_large_for_memory_is_refused(saved, monkeypatch, one_line_error):
    monkeypatch.setattr(checkpoint, "available_bytes", lambda: 10_000)
    with pytest.raises(TuiGptError) as info:
        load_model(saved)
    assert "memory" in one_line_error(info.value, str(saved))


@pytest.mark.parametrize("header", [b"\xff" * 8, struct.pack("<Q", 50) + b"[1,2]" + b" " * 45, b"abc"])
def test_malformed_safetensors_headers(saved, header, one_line_error):
    (saved / "model.safetensors").write_bytes(header)
    with pytest.raises(TuiGptError) as info:
        load_model(saved)
    one_line_error(info.value, "model.safetensors")


def test_a_tensor_past_the_end_of_the_file(saved, one_line_error):
    file = saved / "model.safetensors"
    file.write_bytes(file.read_bytes()[:-100])
    with pytest.raises(TuiGptError) as info:
        load_model(saved)
    assert "past the end" in one_line_error(info.value, "model.safetensors")


# ---- the tokenizer -----------------------------------------------------------------------------


def test_a_tokenizer_from_another_run_is_refused(saved, tmp_path, make_spec, tiny_file, one_line_error):
    other = open_run(make_spec([str(tiny_file)])).save(tmp_path / "other")
    (saved / "tokenizer.json").write_bytes((other / "tokenizer.json").read_bytes())
    for load in (lambda: load_model(saved), lambda: resume(saved)):
        with pytest.raises(TuiGptError) as info:
            load()
        assert "another run" in one_line_error(info.value, "tokenizer.json")


# ---- files that are not regular files ----------------------------------------------------------


@pytest.mark.parametrize(
    "name",
    ["config.json", "model.safetensors", "tokenizer.json", "trainer.json", "history.json", "optimizer.safetensors"],
)
@pytest.mark.parametrize("kind", ["fifo", "dev-zero", "folder"])
def test_fifos_devices_and_folders_are_one_line_at_once(saved, fables_run, name, kind, one_line_error):
    target = saved / name
    target.unlink()
    if kind == "fifo":
        os.mkfifo(target)
    elif kind == "dev-zero":
        target.symlink_to("/dev/zero")
    else:
        target.mkdir()
    resuming = name in ("trainer.json", "history.json", "optimizer.safetensors")
    with pytest.raises(TuiGptError) as info:
        if resuming:
            load_trainer(saved, fables_run.data, device="cpu")
        else:
            load_model(saved)
    one_line_error(info.value, name)


def test_read_capped_refuses_large_files(tmp_path):
    f = tmp_path / "big.json"
    f.write_bytes(b" " * 101)
    with pytest.raises(TuiGptError, match="more than the 100 allowed"):
        read_capped(f, 100)
    assert read_capped(f, 101) == b" " * 101


# ---- non-finite weights ------------------------------------------------------------------------


@pytest.mark.parametrize("value", [math.nan, math.inf])
def test_nan_and_inf_weights_are_refused(saved, fables_run, value, one_line_error):
    weights = {k: v.clone() for k, v in fables_run.trainer.model.state_dict().items() if k != "lm_head.weight"}
    weights["transformer.h.0.mlp.c_fc.weight"][0, 0] = value
    save_file(weights, str(saved / "model.safetensors"))
    with pytest.raises(TuiGptError) as info:
        load_model(saved)
    assert "NaN or infinite" in one_line_error(info.value, "model.safetensors")
    with pytest.raises(TuiGptError):
        load_trainer(saved, fables_run.data, device="cpu")


# ---- values in the JSON files ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "change"),
    [
        ("trainer.json", lambda d: d.update(step=-5)),
        ("trainer.json", lambda d: d.update(step="5")),
        ("trainer.json", lambda d: d.update(elapsed=-1)),
        ("trainer.json", lambda d: d["param_groups"][0].update(lr="x")),
        ("trainer.json", lambda d: d["param_groups"][0].update(lr=-0.1)),
        ("trainer.json", lambda d: d["param_groups"][0].update(betas=[0.9])),
        ("trainer.json", lambda d: d.update(param_groups=[])),
        ("config.json", lambda d: d["train"].update(batch_size=-1)),
        ("config.json", lambda d: d["train"].update(lr="x")),
        ("config.json", lambda d: d["train"].update(eval_iters=0)),
        ("config.json", lambda d: d["train"].update(dtype="float8")),
        ("config.json", lambda d: d.update(train=[1])),
        ("config.json", lambda d: d["corpus"].update(sources="fables")),
        ("config.json", lambda d: d["corpus"].update(sources=[1, 2])),
        ("history.json", lambda d: d.update(steps=5)),
        ("history.json", lambda d: d.update(loss=["x"] * len(d["loss"]))),
        ("history.json", lambda d: d.update(loss=d["loss"][:-1])),
    ],
    ids=lambda v: v if isinstance(v, str) else "",
)
def test_json_values_are_type_and_range_checked(saved, fables_run, name, change, one_line_error):
    edit_json(saved / name, change)
    with pytest.raises(TuiGptError) as info:
        load_trainer(saved, fables_run.data, device="cpu")
    one_line_error(info.value, name)


def test_a_deeply_nested_json_is_one_line(saved, fables_run, one_line_error):
    (saved / "history.json").write_text("[" * 100_000 + "]" * 100_000)
    with pytest.raises(TuiGptError) as info:
        load_trainer(saved, fables_run.data, device="cpu")
    one_line_error(info.value, "history.json")


# ---- what a resume reads ------------------------------------------------------------------------


def test_a_resume_whose_text_is_gone_names_it(tmp_path, make_spec, tiny_file, one_line_error):
    ck = open_run(make_spec([str(tiny_file)])).save(tmp_path / "ck")
    tiny_file.unlink()
    with pytest.raises(TuiGptError) as info:
        resume(ck)
    assert "is gone" in one_line_error(info.value, str(tiny_file))


def test_a_resume_reads_the_recorded_sources(tmp_path, make_spec, tiny_file):
    ck = open_run(make_spec([str(tiny_file)])).save(tmp_path / "ck")
    run = resume(ck)
    assert run.spec.sources == [str(tiny_file.resolve())]
    assert run.corpus.texts == [tiny_file.read_text()]


# ---- flags on --resume are applied and recorded -------------------------------------------------


def test_resume_flags_are_applied_and_recorded(saved, tmp_path):
    args = parser_train().parse_args(["--resume", str(saved), "--lr", "0.005", "--batch-size", "3", "--device", "cpu"])
    spec = RunSpec.from_args(args)
    assert sorted(spec.given) == ["batch_size", "device", "lr"]  # where to run is always the user's
    run = open_run(spec)
    tr = run.trainer
    assert (tr.config.lr, tr.config.batch_size, tr.config.eval_interval) == (0.005, 3, 0)
    assert tr.history.changes == [{"step": 2, "lr": 0.005, "batch_size": 3}]
    out = run.save(tmp_path / "again")
    assert json.loads((out / "history.json").read_text())["changes"] == tr.history.changes
    assert read_config_json(out)["train"]["lr"] == 0.005


def test_defaults_on_resume_do_not_override_the_checkpoint(saved):
    spec = RunSpec.from_args(parser_train().parse_args(["--resume", str(saved), "--device", "cpu"]))
    assert spec.given == ["device"]
    tr = open_run(spec).trainer
    assert tr.config.lr == 1e-2 and tr.config.batch_size == 4  # the checkpoint's, not the flags' defaults
    assert tr.history.changes == []


def test_a_setting_a_resume_cannot_take_is_refused(saved, one_line_error):
    args = parser_train().parse_args(["--resume", str(saved), "--n-layer", "8", "--warmup", "5"])
    with pytest.raises(TuiGptError) as exc:
        open_run(RunSpec.from_args(args))
    assert "--n-layer, --warmup" in one_line_error(exc.value, "--resume")


# ---- a non-finite loss in training --------------------------------------------------------------


def test_a_nan_loss_restores_the_last_good_weights(fables_run):
    tr = fables_run.trainer
    good = {k: v.clone() for k, v in tr.model.state_dict().items()}  # the copy is taken every GOOD_EVERY steps
    list(tr.run(steps=3))
    with torch.no_grad():
        tr.model.transformer.h[0].mlp.c_fc.weight[0, 0] = math.nan
    ev = tr.train_step()
    assert math.isnan(ev.loss) and ev.restored == 0
    for name, value in tr.model.state_dict().items():
        assert torch.equal(value, good[name]), name
    assert all(torch.isfinite(v).all() for s in tr.optimizer.state.values() for v in s.values())
    ev = tr.train_step()
    assert math.isfinite(ev.loss) and ev.restored is None and tr.step == 5


def test_a_loss_that_stays_nan_gives_up_with_one_line(fables_run, one_line_error):
    tr = fables_run.trainer
    list(tr.run(steps=2))
    with pytest.raises(TuiGptError) as info:
        for _ in range(MAX_RESTORES + 1):
            with torch.no_grad():
                tr.model.transformer.ln_f.weight.fill_(math.nan)
            tr.train_step()
    assert "lower --lr" in one_line_error(info.value, "NaN")


# ---- training text behind a wall ---------------------------------------------------------------

LOAD = """
import sys
from tui_gpt.engine.corpus import load_corpus
from tui_gpt.errors import TuiGptError
try:
    load_corpus([sys.argv[1]])
except TuiGptError as exc:
    print(exc)
"""


@pytest.mark.parametrize("source", ["corpus", "corpus/link.txt"])
def test_a_link_into_an_unreadable_folder_is_one_line(source):
    base = Path(tempfile.mkdtemp())  # not under pytest's private tmp: another user must reach it
    try:
        base.chmod(0o755)
        (base / "locked").mkdir()
        (base / "locked" / "a.txt").write_text("hidden text\n")
        (base / "corpus").mkdir()
        (base / "corpus" / "b.txt").write_text("open text\n")
        (base / "corpus" / "link.txt").symlink_to(base / "locked" / "a.txt")
        (base / "locked").chmod(0)
        if os.geteuid() != 0:
            r = subprocess.run([sys.executable, "-c", LOAD, str(base / source)], capture_output=True, text=True)
        else:  # root reads everything: load it as nobody, with a Python that nobody may run
            python, setpriv = Path("/usr/bin/python3"), shutil.which("setpriv")
            if not python.exists() or setpriv is None:
                pytest.skip("running as root without setpriv and /usr/bin/python3")
            repo = Path(__file__).resolve().parents[1]
            cmd = [setpriv, "--reuid=65534", "--regid=65534", "--clear-groups", str(python), "-c", LOAD]
            env = {"PYTHONPATH": str(repo), "PATH": "/usr/bin:/bin"}
            r = subprocess.run([*cmd, str(base / source)], capture_output=True, text=True, env=env, timeout=60)
            if "No module named" in r.stderr:
                pytest.skip(f"nobody cannot import tui_gpt from {repo}")
        assert r.returncode == 0 and "Traceback" not in r.stderr, r.stderr
        assert r.stdout.count("\n") == 1 and "link.txt: cannot be read (Permission denied)" in r.stdout, r.stdout
    finally:
        (base / "locked").chmod(0o755)
        shutil.rmtree(base)
