"""Checkpoints: exact round trips, exact resumes, atomic saves, and loading that never unpickles."""

from __future__ import annotations

import json
import os
import pickle
import shutil
from pathlib import Path

import pytest
import safetensors.torch
import torch

from tui_gpt.engine import checkpoint
from tui_gpt.engine.checkpoint import FILES, load_model, load_trainer, read_config_json, save_checkpoint
from tui_gpt.engine.session import RunSpec, open_run
from tui_gpt.errors import TuiGptError


def probe_batch(vocab_size: int, block_size: int) -> torch.Tensor:
    return torch.randint(vocab_size, (2, block_size), generator=torch.Generator().manual_seed(7))


@torch.no_grad()
def logits_of(model, x: torch.Tensor) -> torch.Tensor:
    model.eval()
    return model(x)[0]


def train(run, steps: int) -> list:
    return list(run.trainer.run(steps=steps))


def snapshot(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())}


def test_save_then_load_model_gives_identical_logits(tmp_path, fables_run):
    train(fables_run, 5)
    out = fables_run.save(tmp_path / "ck")
    assert out == (tmp_path / "ck").resolve()
    assert sorted(p.name for p in out.iterdir()) == sorted([*FILES, ".lock"])
    assert os.listdir(tmp_path) == ["ck"]

    model, tok, cfg = load_model(out)
    trainer = fables_run.trainer
    x = probe_batch(tok.vocab_size, model.config.block_size)
    assert torch.equal(logits_of(model, x), logits_of(trainer.model, x))
    assert model.config == trainer.model.config
    assert not model.training
    assert model.lm_head.weight is model.transformer.wte.weight  # still tied after loading
    assert tok.kind == "char" and tok.vocab_size == fables_run.tokenizer.vocab_size
    assert tok.encode("The fox.") == fables_run.tokenizer.encode("The fox.")
    assert cfg["tokenizer"] == "char"
    assert cfg["train"]["dtype"] == "float32"
    assert cfg["corpus"]["documents"] == len(fables_run.corpus.documents)
    assert json.loads((out / "trainer.json").read_text())["step"] == 5
    assert len(json.loads((out / "history.json").read_text())["loss"]) == 5


def test_saving_again_replaces_the_checkpoint(tmp_path, fables_run):
    out = fables_run.save(tmp_path / "ck")
    train(fables_run, 3)
    fables_run.save(out)
    assert read_config_json(out)["format"] == checkpoint.FORMAT
    assert json.loads((out / "trainer.json").read_text())["step"] == 3
    assert os.listdir(tmp_path) == ["ck"]  # no temporary or .old directory left


@pytest.mark.parametrize("dropout", [0.0, 0.1])
def test_resume_is_exactly_an_uninterrupted_run(tmp_path, make_spec, dropout):
    spec = make_spec(dropout=dropout, eval_interval=4)

    full = open_run(spec)
    full_events = train(full, 12)

    first = open_run(spec)
    train(first, 6)
    first.save(tmp_path / "ck")
    resumed = load_trainer(tmp_path / "ck", first.data, device="cpu")
    assert resumed.step == 6
    rest = list(resumed.run(steps=6))

    expected = [e for e in full_events if e.step > 6]
    assert [e.step for e in rest] == [e.step for e in expected] == list(range(7, 13))
    assert [e.loss for e in rest] == [e.loss for e in expected]
    assert [e.lr for e in rest] == [e.lr for e in expected]
    assert [e.val_loss for e in rest] == [e.val_loss for e in expected]
    assert resumed.history.steps == full.trainer.history.steps
    assert resumed.history.loss == full.trainer.history.loss
    for (name, a), (_, b) in zip(
        resumed.model.state_dict().items(), full.trainer.model.state_dict().items(), strict=True
    ):
        assert torch.equal(a, b), name


def test_resume_through_open_run(tmp_path, make_spec):
    spec = make_spec()
    full = open_run(spec)
    full_losses = [e.loss for e in train(full, 8)]

    first = open_run(spec)
    train(first, 4)
    first.save(tmp_path / "ck")
    resumed = open_run(RunSpec(resume=str(tmp_path / "ck"), train={"device": "cpu"}))
    assert resumed.trainer.step == 4
    assert resumed.corpus.texts == first.corpus.texts
    assert resumed.tokenizer.vocab_size == first.tokenizer.vocab_size
    assert [e.loss for e in train(resumed, 4)] == full_losses[4:]


def crash_when_writing(monkeypatch, victim: str) -> list[str]:
    """Make the writer of `victim` (a file name inside the checkpoint) raise, as a full disk would."""
    written: list[str] = []

    def check(path) -> None:
        written.append(Path(path).name)
        if Path(path).name == victim:
            raise OSError(28, "No space left on device (simulated)")

    if victim.endswith(".safetensors"):
        # Wherever the checkpoint module finds save_file: its own name, or the safetensors module.
        for owner in (checkpoint, safetensors.torch):
            if hasattr(owner, "save_file"):
                real_save = owner.save_file

                def save_file(tensors, filename, *args, _real=real_save, **kwargs):
                    check(filename)
                    return _real(tensors, filename, *args, **kwargs)

                monkeypatch.setattr(owner, "save_file", save_file)
    else:
        real_write = checkpoint.write_json

        def write_json(path, obj):
            check(path)
            return real_write(path, obj)

        monkeypatch.setattr(checkpoint, "write_json", write_json)
    return written


@pytest.mark.parametrize("victim", ["optimizer.safetensors", "trainer.json"])
def test_crash_during_a_save_keeps_the_previous_checkpoint(tmp_path, monkeypatch, fables_run, victim):
    out = fables_run.save(tmp_path / "ck")
    before = snapshot(out)
    model, tok, _ = load_model(out)
    x = probe_batch(tok.vocab_size, model.config.block_size)
    logits_before = logits_of(model, x)

    train(fables_run, 3)
    written = crash_when_writing(monkeypatch, victim)
    with pytest.raises(TuiGptError, match="no space left on device; the previous checkpoint at step 0 is intact"):
        fables_run.save(out)  # the second save dies partway through
    assert victim in written, "the simulated crash never happened"

    assert os.listdir(tmp_path) == ["ck"], "a temporary directory was left behind"
    assert snapshot(out) == before
    model, _, _ = load_model(out)
    assert torch.equal(logits_of(model, x), logits_before)
    assert json.loads((out / "trainer.json").read_text())["step"] == 0


def crash_between_renames(monkeypatch, fables_run, out: Path) -> None:
    """Save again, failing after the old checkpoint moved aside but before the new one moved in."""
    real_rename = Path.rename

    def rename(self, target):
        if Path(target) == out.resolve():
            raise OSError("power cut (simulated)")
        return real_rename(self, target)

    with monkeypatch.context() as m:
        m.setattr(Path, "rename", rename)
        with pytest.raises(TuiGptError, match="simulated"):
            fables_run.save(out)


def test_crash_between_the_renames_still_loads(tmp_path, monkeypatch, fables_run):
    out = fables_run.save(tmp_path / "ck")
    before = snapshot(out)
    model, tok, _ = load_model(out)
    x = probe_batch(tok.vocab_size, model.config.block_size)
    logits_before = logits_of(model, x)

    train(fables_run, 2)
    crash_between_renames(monkeypatch, fables_run, out)
    assert os.listdir(tmp_path) == [".ck.old"]
    assert snapshot(tmp_path / ".ck.old") == before
    model, _, _ = load_model(out)  # found beside it
    assert torch.equal(logits_of(model, x), logits_before)
    assert load_trainer(out, fables_run.data, device="cpu").step == 0

    fables_run.save(out)  # the next save completes and tidies up
    assert os.listdir(tmp_path) == ["ck"]
    assert json.loads((out / "trainer.json").read_text())["step"] == 2


def test_resume_after_a_crash_between_the_renames(tmp_path, monkeypatch, fables_run):
    out = fables_run.save(tmp_path / "ck")
    train(fables_run, 2)
    crash_between_renames(monkeypatch, fables_run, out)
    resumed = open_run(RunSpec(resume=str(out), train={"device": "cpu"}))
    assert resumed.trainer.step == 0


def test_a_second_interrupted_save_still_leaves_a_checkpoint(tmp_path, monkeypatch, fables_run):
    out = fables_run.save(tmp_path / "ck")
    crash_between_renames(monkeypatch, fables_run, out)
    crash_between_renames(monkeypatch, fables_run, out)
    load_model(out)


# ---- loading bad checkpoints: one line, never a pickle ------------------------------------


class _Exploit:
    """Unpickling this creates a directory: proof that something unpickled the file."""

    marker = ""

    def __reduce__(self):
        return (os.mkdir, (self.marker,))


@pytest.fixture
def saved(tmp_path, fables_run) -> Path:
    train(fables_run, 1)
    return fables_run.save(tmp_path / "ck")


@pytest.mark.parametrize("content", ["garbage", "empty", "pickle", "torch-save"])
def test_bad_weights_are_refused_without_unpickling(saved, tmp_path, fables_run, content, one_line_error):
    weights = saved / "model.safetensors"
    marker = tmp_path / "unpickled"
    if content == "garbage":
        weights.write_bytes(b"\x00\xff not safetensors at all " * 20)
    elif content == "empty":
        weights.write_bytes(b"")
    elif content == "pickle":
        exploit = _Exploit()
        exploit.marker = str(marker)
        weights.write_bytes(pickle.dumps(exploit))
    else:
        torch.save({"exploit": [1, 2, 3], **fables_run.trainer.model.state_dict()}, weights)
    with pytest.raises(TuiGptError) as info:
        load_model(saved)
    one_line_error(info.value, "model.safetensors")
    with pytest.raises(TuiGptError) as info:
        load_trainer(saved, fables_run.data, device="cpu")
    one_line_error(info.value, "model.safetensors")
    assert not marker.exists()


def test_bad_optimizer_state_is_refused(saved, fables_run, one_line_error):
    (saved / "optimizer.safetensors").write_bytes(b"not a safetensors file")
    with pytest.raises(TuiGptError) as info:
        load_trainer(saved, fables_run.data, device="cpu")
    one_line_error(info.value, "optimizer.safetensors")
    load_model(saved)  # probing needs only the weights


BAD_MODEL = json.dumps({"format": checkpoint.FORMAT, "model": {"vocab_size": 10, "n_wheels": 4}}).encode()


@pytest.mark.parametrize(
    ("content", "named"),
    [
        (b"{not json", "config.json"),
        (b"", "config.json"),
        (b"\xff\xfe\x00", "config.json"),
        (b"[1, 2, 3]", "config.json"),
        (b'{"format": "something-else/9"}', "ck"),
        (BAD_MODEL, "config.json"),
    ],
    ids=["syntax", "empty", "binary", "not-object", "wrong-format", "bad-model"],
)
def test_corrupt_config_json(saved, content, named, one_line_error):
    (saved / "config.json").write_bytes(content)
    with pytest.raises(TuiGptError) as info:
        load_model(saved)
    one_line_error(info.value, str(saved / named) if named != "ck" else str(saved))


@pytest.mark.parametrize("bad", [{"n_head": 3}, {"vocab_size": "sixty"}, {"dropout": "none"}])
def test_bad_model_values_in_config_json(saved, bad, one_line_error):
    cfg = json.loads((saved / "config.json").read_text())
    cfg["model"].update(bad)
    (saved / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(TuiGptError) as info:
        load_model(saved)
    one_line_error(info.value, "config.json")


def test_weights_that_do_not_match_the_config(saved, one_line_error):
    cfg = json.loads((saved / "config.json").read_text())
    cfg["model"]["n_embd"] *= 2
    (saved / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(TuiGptError) as info:
        load_model(saved)
    one_line_error(info.value, "model.safetensors")


@pytest.mark.parametrize("name", ["model.safetensors", "config.json", "tokenizer.json"])
def test_missing_file_for_probing(saved, name, one_line_error):
    (saved / name).unlink()
    with pytest.raises(TuiGptError) as info:
        load_model(saved)
    one_line_error(info.value, name)


@pytest.mark.parametrize("name", ["model.safetensors", "optimizer.safetensors", "trainer.json", "history.json"])
def test_missing_file_for_resuming(saved, fables_run, name, one_line_error):
    (saved / name).unlink()
    with pytest.raises(TuiGptError) as info:
        load_trainer(saved, fables_run.data, device="cpu")
    one_line_error(info.value, name)


def test_not_a_checkpoint(tmp_path, one_line_error):
    with pytest.raises(TuiGptError) as info:
        load_model(tmp_path / "nowhere")
    one_line_error(info.value, "nowhere")
    (tmp_path / "file.txt").write_text("hello")
    with pytest.raises(TuiGptError) as info:
        load_model(tmp_path / "file.txt")
    one_line_error(info.value, "file.txt")


def test_save_into_a_fresh_nested_folder(tmp_path, fables_run):
    out = save_checkpoint(
        tmp_path / "a" / "b" / "ck", fables_run.trainer, fables_run.tokenizer, fables_run.corpus_info()
    )
    assert (out / "model.safetensors").is_file()
    shutil.rmtree(tmp_path / "a")


# ---- --keep best --------------------------------------------------------------------------------


def keep_best(run, out: Path, steps: int) -> list[int]:
    """Train `steps` steps as train and the app do with --keep best; the steps whose weights went to out/best."""
    kept = []
    for ev in run.trainer.run(steps=steps):
        if run.save_best(out, ev.val_loss is not None) is not None:
            kept.append(ev.step)
    return kept


def test_keep_best_saves_each_new_best_inside_the_run_folder(tmp_path, make_spec):
    from tui_gpt.engine.savedir import BEST, best_val, check_out, is_checkpoint_dir

    run = open_run(make_spec(eval_interval=2, keep="best"))
    out = tmp_path / "run"
    kept = keep_best(run, out, 6)
    history = run.trainer.history
    best = history.best_val()
    assert best is not None and kept and kept[-1] == best[0] and 0 not in kept  # never the random start
    assert sorted(os.listdir(out)) == [BEST]  # the run's own checkpoint is not saved yet: only its best
    assert check_out(out) == out.resolve()  # the run may still save there
    run.save(out)
    assert is_checkpoint_dir(out) and is_checkpoint_dir(out / BEST)
    assert sorted(os.listdir(out)) == sorted([*FILES, ".lock", BEST])
    assert best_val(out / BEST) == best == best_val(out)  # trainer.json records it: the run's own too
    assert json.loads((out / BEST / "trainer.json").read_text())["step"] == best[0]
    model, _, _ = load_model(out / BEST)  # `tui-gpt complete RUN/best` loads it
    assert model.config == run.trainer.model.config
    weights = (out / BEST / "model.safetensors").read_bytes()

    # Saving the run again carries best/ over, untouched; a worse evaluation keeps it as it is.
    history.eval_steps.append(run.trainer.step)
    history.eval_val.append(best[1] + 1.0)
    history.eval_train.append(0.0)
    assert run.save_best(out, evaluated=True) is None
    run.save(out)
    assert (out / BEST / "model.safetensors").read_bytes() == weights
    assert os.listdir(tmp_path) == ["run"]  # no temporary or .old folder left beside it

    # --keep last (the default) never writes best/.
    other = open_run(make_spec(eval_interval=2))
    assert keep_best(other, tmp_path / "last", 4) == [] and not (tmp_path / "last").exists()


def test_a_folder_named_best_that_is_not_ours_is_never_adopted(tmp_path, fables_run, one_line_error):
    out = tmp_path / "run"
    (out / "best").mkdir(parents=True)
    (out / "best" / "notes.txt").write_text("mine")
    with pytest.raises(TuiGptError) as caught:
        fables_run.save(out)
    assert "not a tui-gpt checkpoint" in one_line_error(caught.value, str(out.resolve()))
    assert (out / "best" / "notes.txt").read_text() == "mine"


def test_best_survives_a_save_killed_between_its_renames(tmp_path, monkeypatch, make_spec):
    from tui_gpt.engine.savedir import BEST

    run = open_run(make_spec(eval_interval=2, keep="best"))
    out = tmp_path / "run"
    run.save(out)
    assert keep_best(run, out, 4)
    weights = (out / BEST / "model.safetensors").read_bytes()
    crash_between_renames(monkeypatch, run, out)
    assert os.listdir(tmp_path) == [".run.old"]  # best/ waits aside with the rest
    run.save(out)  # the next save completes, and brings best/ back
    assert os.listdir(tmp_path) == ["run"]
    assert (out / BEST / "model.safetensors").read_bytes() == weights
    load_model(out / BEST)
