"""--device: a device this torch cannot train on is one line, exit 2, before anything is written.

Every way into a model (train, bench, the app, a resume, the engine's Trainer, loading a
checkpoint to probe) goes through one check. The tests hide CUDA and MPS so they mean the same
on a GPU machine as on a CPU-only one.
"""

from __future__ import annotations

import pytest
import torch

from tui_gpt.commands.cli import main
from tui_gpt.engine.session import RunSpec, open_run, preflight
from tui_gpt.engine.trainer import pick_device
from tui_gpt.errors import TuiGptError


@pytest.fixture
def cpu_only(monkeypatch):
    """A torch that sees no CUDA and no MPS, whatever this machine has."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 0)
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: False)


def one_line(err: str, *names: str) -> str:
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("tui-gpt: error:"), err
    assert "Traceback" not in err
    for name in names:
        assert name in lines[0], lines[0]
    return lines[0]


@pytest.mark.parametrize("device", ["meta", "xla", "bogus", "", "cuda:x", "cuda:-1", "cpu:0:1", "CUDA", " cuda"])
def test_a_device_no_run_can_train_on_is_refused_by_the_parser(tmp_path, capsys, device):
    out = tmp_path / "out"
    for argv in (
        ["train", "fables", "--steps", "1", "--out", str(out)],
        ["bench", "--steps", "1"],
        ["--out", str(out)],
    ):
        with pytest.raises(SystemExit) as info:
            main([*argv, "--device", device])
        assert info.value.code == 2
        err = capsys.readouterr().err
        assert "--device" in err and "Traceback" not in err
    assert not out.exists()


@pytest.mark.parametrize("device", ["cuda", "cuda:0", "cuda:3", "mps"])
def test_an_unavailable_device_is_one_line_and_writes_nothing(tmp_path, capsys, cpu_only, device):
    out = tmp_path / "out"
    bench = ["bench", "--steps", "1"]
    for argv in (
        ["train", "fables", "--steps", "1", "--out", str(out)],
        bench,
        [*bench, "--ui"],
        [*bench, "--seed-sentence"],
        [*bench, "--to-loss", "1"],
        ["fables", "--out", str(out)],  # the app
    ):
        assert main([*argv, "--device", device]) == 2, argv
        one_line(capsys.readouterr().err, f"--device {device}")
        assert not out.exists(), f"{argv}: {list(out.iterdir())}"


def test_a_gpu_index_past_the_visible_ones_is_one_line(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    out = tmp_path / "out"
    assert main(["train", "fables", "--steps", "1", "--device", "cuda:2", "--out", str(out)]) == 2
    line = one_line(capsys.readouterr().err, "--device cuda:2")
    assert "2 GPUs" in line
    assert not out.exists()


def test_a_resume_on_an_unavailable_device_is_one_line(tmp_path, capsys, fables_run, cpu_only):
    list(fables_run.trainer.run(steps=2))
    ck = fables_run.save(tmp_path / "ck")
    before = sorted(p.name for p in ck.iterdir())
    assert main(["train", "--resume", str(ck), "--steps", "3", "--device", "mps"]) == 2
    one_line(capsys.readouterr().err, "--device mps")
    assert sorted(p.name for p in ck.iterdir()) == before  # no .lock, nothing rewritten


@pytest.mark.parametrize("device", ["cuda", "mps", "meta"])
def test_the_engine_refuses_the_same_way(make_spec, cpu_only, device):
    """The trainer process and any other caller of the engine meet the same check, not a torch assertion."""
    with pytest.raises(TuiGptError, match=f"--device.*{device}"):
        pick_device(device)
    spec = make_spec(device=device)
    with pytest.raises(TuiGptError, match=f"--device.*{device}"):
        preflight(spec)
    with pytest.raises(TuiGptError, match=f"--device.*{device}"):
        open_run(spec)


def test_auto_and_cpu_still_work(make_spec, cpu_only):
    assert pick_device("auto") == torch.device("cpu")
    assert pick_device("cpu") == torch.device("cpu")
    preflight(make_spec(device="auto"))
    run = open_run(RunSpec(**make_spec().to_dict() | {"train": {**make_spec().train.to_dict(), "device": "auto"}}))
    assert run.trainer.device.type == "cpu"


def test_loading_a_checkpoint_to_probe_on_an_unavailable_device_is_one_line(tmp_path, fables_run, cpu_only):
    from tui_gpt.engine.checkpoint import load_model

    ck = fables_run.save(tmp_path / "ck")
    with pytest.raises(TuiGptError, match="--device cuda"):
        load_model(ck, device="cuda")
    assert load_model(ck)[0].lm_head.weight.device.type == "cpu"


def test_a_checkpoint_saved_on_another_kind_of_device_still_loads(tmp_path, fables_run):
    """The device a checkpoint names is where it trained; a resume trains where it is told, so any name loads."""
    import json

    from tui_gpt.engine.checkpoint import load_model

    ck = fables_run.save(tmp_path / "ck")
    config = json.loads((ck / "config.json").read_text())
    config["train"]["device"] = "xpu:3"
    (ck / "config.json").write_text(json.dumps(config))
    load_model(ck)
    run = open_run(RunSpec(resume=str(ck), train={"device": "cpu"}, given=["device"]))
    assert run.trainer.device.type == "cpu"
