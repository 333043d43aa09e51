"""`--log tensorboard` and `--log trackio`, read back with the tools' own readers."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from dataclasses import asdict, replace
from pathlib import Path

import pytest
from test_engine_cli import TINY
from test_engine_faults import _tmpfs, fill

from tui_gpt.errors import TuiGptError
from tui_gpt.runs.logsinks import METRICS, TRACKIO_PROJECT, make_sink
from tui_gpt.runs.tracking import EvalRow, RunEnd, RunInfo

ROOT = Path(__file__).resolve().parent.parent
INFO = RunInfo(
    kind="train",
    settings={"sources": ["fables"], "n_layer": 1, "causal": True, "train": {"lr": 3e-3, "min_lr": None}},
    tokenizer="char",
    text_name="fables",
    text_digest="d1g3st",
    reproduce="tui-gpt train fables --n-layer 1 --lr 0.003",
    name="lr 3e-3 | seed 2",
)
# The last row has no bits per byte and no lr: those tags skip it, the rest do not.
ROWS = [
    EvalRow(step=0, tokens=0, wall_s=0.5, train=4.2, val=4.25, val_bpb=6.1, lr=3e-4, tokens_per_s=900.0),
    EvalRow(step=10, tokens=640, wall_s=2.0, train=3.1, val=3.2, val_bpb=4.6, lr=3e-3, tokens_per_s=1200.0),
    EvalRow(step=20, tokens=1280, wall_s=3.5, train=2.5, val=2.7, tokens_per_s=1250.0),
]
END = RunEnd(status="done", step=20, wall_s=3.7, tokens_per_s=1240.0)


def expected(tag: str) -> list[tuple[int, float]]:
    """(step, value) of every row that has a value for `tag`."""
    return [(r.step, v) for r in ROWS if (v := METRICS[tag](r)) is not None]


def run_sink(sink, info: RunInfo = INFO) -> None:
    sink.start(info)
    for row in ROWS:
        sink.eval(row)
    sink.finish(END)


# ---- TensorBoard --------------------------------------------------------------------------------


def accumulator(folder: Path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(folder), size_guidance={"scalars": 0, "tensors": 0})
    acc.Reload()
    return acc


def test_tensorboard_reads_back_every_scalar_by_step_with_the_settings(tmp_path):
    pytest.importorskip("tensorboard")
    sink = make_sink("tensorboard", tmp_path / "tb", INFO)
    where = sink.where  # whole before the run starts: a front end can say it first
    run_sink(sink)
    (folder,) = (tmp_path / "tb").iterdir()
    assert folder.name.startswith("lr-3e-3-seed-2-")  # readable, folder-safe, and unique
    assert where == f"TensorBoard events in {folder}; see them with: tensorboard --logdir {tmp_path / 'tb'}"
    acc = accumulator(folder)
    assert sorted(acc.Tags()["scalars"]) == sorted(METRICS)
    for tag in METRICS:
        got = [(e.step, e.value) for e in acc.Scalars(tag)]
        assert [s for s, _ in got] == [s for s, _ in expected(tag)], tag
        assert [v for _, v in got] == pytest.approx([v for _, v in expected(tag)], rel=1e-6), tag
    # The x axis "relative" is the run's own wall time.
    walls = [e.wall_time for e in acc.Scalars("loss/val")]
    assert [w - walls[0] for w in walls] == pytest.approx([0.0, 1.5, 3.0], abs=1e-3)
    settings = acc.Tensors("settings/text_summary")[0].tensor_proto.string_val[0].decode()
    assert INFO.reproduce in settings and "| train.lr | 0.003 |" in settings
    (end,) = acc.Tensors("end/text_summary")
    assert end.step == 20 and end.tensor_proto.string_val[0].decode().startswith("done at step 20")
    assert "_hparams_/session_start_info" in acc.PluginTagToContent("hparams")


def test_tensorboard_hparams_hold_the_flat_settings(tmp_path):
    pytest.importorskip("tensorboard")
    from tensorboard.plugins.hparams.plugin_data_pb2 import HParamsPluginData

    run_sink(make_sink("tensorboard", tmp_path))
    (folder,) = tmp_path.iterdir()
    content = accumulator(folder).PluginTagToContent("hparams")["_hparams_/session_start_info"]
    hparams = HParamsPluginData.FromString(content).session_start_info.hparams
    assert hparams["train.lr"].number_value == pytest.approx(3e-3)
    assert hparams["tokenizer"].string_value == "char" and hparams["sources"].string_value == "fables"
    assert "train.min_lr" not in hparams  # unset: left out, not "None"


def test_two_runs_get_two_folders_side_by_side(tmp_path):
    pytest.importorskip("tensorboard")
    for _ in range(2):  # the same settings twice: each run is a RunInfo of its own
        run_sink(make_sink("tensorboard", tmp_path), replace(INFO))
    folders = sorted(tmp_path.iterdir())
    assert len(folders) == 2
    assert all([e.step for e in accumulator(f).Scalars("loss/val")] == [0, 10, 20] for f in folders)


@pytest.fixture
def small_disk(tmp_path):
    yield from _tmpfs(tmp_path / "disk", "size=256k")


def test_a_full_disk_warns_once_drops_the_log_and_keeps_what_was_written(small_disk, capsys):
    pytest.importorskip("tensorboard")
    sink = make_sink("tensorboard", small_disk / "tb")
    sink.start(INFO)
    sink.eval(ROWS[0])
    fill(small_disk)
    later = [replace(ROWS[1], step=step) for step in range(1, 101)]  # more than the file's last page holds
    for row in later:
        sink.eval(row)  # never raises: training goes on
    sink.finish(END)
    err = capsys.readouterr().err
    assert err.splitlines() == [
        "tui-gpt: warning: --log tensorboard: no space left on device; no longer logging this run there"
    ]
    (folder,) = (small_disk / "tb").iterdir()
    steps = [e.step for e in accumulator(folder).Scalars("loss/val")]
    assert steps == list(range(len(steps))) and 1 < len(steps) < 100  # what fitted, each row whole


def test_tensorboard_refuses_a_folder_it_cannot_write_in_one_line(tmp_path):
    pytest.importorskip("tensorboard")
    (tmp_path / "file").write_text("not a folder")
    sink = make_sink("tensorboard", tmp_path / "file" / "tb")
    with pytest.raises(TuiGptError) as info:
        sink.start(INFO)
    assert str(info.value).startswith(f"--log tensorboard: cannot write to {tmp_path / 'file' / 'tb'}/lr-3e-3")
    assert str(info.value).endswith("(not a directory)")


# ---- what make_sink refuses -------------------------------------------------------------------


TENSORBOARD_MODULES = ["tensorboard", "torch.utils.tensorboard", "torch.utils.tensorboard.summary"]


@pytest.mark.parametrize(("name", "hidden"), [("tensorboard", TENSORBOARD_MODULES), ("trackio", ["trackio"])])
def test_a_missing_package_is_one_line_that_says_how_to_install_it(monkeypatch, tmp_path, name, hidden):
    for module in hidden:
        monkeypatch.setitem(sys.modules, module, None)  # what importing a package that is not there gives
    with pytest.raises(TuiGptError) as info:
        make_sink(name, tmp_path)
    assert str(info.value) == f"--log {name} needs the {name} package: pip install 'tui-gpt[{name}]'"


def test_an_unknown_log_and_a_remote_trackio_are_refused_in_one_line(monkeypatch, tmp_path):
    with pytest.raises(
        TuiGptError, match=r"^--log wandb: not a log this tui-gpt writes; choose from tensorboard, trackio$"
    ):
        make_sink("wandb", tmp_path)
    monkeypatch.setenv("TRACKIO_SPACE_ID", "me/my-space")
    with pytest.raises(TuiGptError, match=r"^--log trackio logs on this machine only, but TRACKIO_SPACE_ID is set"):
        make_sink("trackio", tmp_path)


# ---- trackio ------------------------------------------------------------------------------------

# trackio fixes its folder when it is imported, so each trackio run is a fresh interpreter. It logs,
# says whether anything touched the network, and (unless the test fills the disk) reads back.
TRACKIO_WRITE = """
import json, sys
net = []
sys.addaudithook(lambda event, args: net.append(event) if event.startswith("socket.") else None)

from tui_gpt.runs.logsinks import make_sink
from tui_gpt.runs.tracking import EvalRow, RunEnd, RunInfo

given = json.loads(sys.argv[1])
sink = make_sink("trackio", None, RunInfo(**given["info"]))
sink.start(RunInfo(**given["info"]))
print("started", flush=True)
sys.stdin.readline()  # the test may fill the disk here
for row in given["rows"]:
    sink.eval(EvalRow(**row))
sink.finish(RunEnd(**given["end"]))
print(json.dumps({"net": net, "where": sink.where}), flush=True)
if not given["read"]:
    sys.exit()
"""
# trackio's own readers: every run of the project, its config and its logged rows.
TRACKIO_READ = """
import json, trackio
from trackio.sqlite_storage import SQLiteStorage
from tui_gpt.runs.logsinks import TRACKIO_PROJECT as P

runs = trackio.Api().runs(P)
print(json.dumps([{"name": r.name, "config": r.config, "logs": SQLiteStorage.get_logs(P, run=r.name)} for r in runs]))
"""


def trackio_env(tmp_path: Path, store: Path) -> dict[str, str]:
    """An environment whose trackio store is `store`, with a saved Hugging Face token to tempt it online."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TRACKIO_", "HF_"))}
    env |= {"TRACKIO_DIR": str(store), "HF_HOME": str(tmp_path / "hf"), "HF_TOKEN": "hf_not_a_real_token"}
    return env | {"PYTHONPATH": str(ROOT), "PYTHONIOENCODING": "utf-8", "OMP_NUM_THREADS": "1"}


def trackio_run(tmp_path: Path, store: Path, between=None) -> tuple[int, list[str], str]:
    """Log ROWS to a trackio store at `store` in a fresh interpreter and read them back; or, with
    `between`, call it once the run has started, and read nothing back. Its status, stdout lines, stderr."""
    rows = [asdict(r) for r in ROWS]
    given = json.dumps({"info": asdict(INFO), "rows": rows, "end": asdict(END), "read": between is None})
    with subprocess.Popen(
        [sys.executable, "-c", TRACKIO_WRITE + TRACKIO_READ, given],
        env=trackio_env(tmp_path, store),
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    ) as proc:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        if line == "started\n" and between is not None:
            between()
        out, err = proc.communicate("go\n", timeout=60)
    return proc.returncode, (line + out).splitlines(), err


def test_trackio_reads_back_every_metric_by_step_and_never_goes_online(tmp_path):
    pytest.importorskip("trackio")
    code, lines, err = trackio_run(tmp_path, tmp_path / "store")
    assert code == 0, err
    started, wrote, read = lines  # trackio's own chatter stays off stdout
    assert started == "started"
    assert json.loads(wrote)["net"] == [], "trackio reached for the network"
    (run,) = json.loads(read)
    assert run["name"].startswith("lr-3e-3-seed-2-")
    where = json.loads(wrote)["where"]
    assert where.startswith(f"trackio run {run['name']} in {tmp_path / 'store'};")
    assert where.endswith(f"trackio show --project {TRACKIO_PROJECT}")
    assert run["config"]["train.lr"] == 3e-3 and run["config"]["reproduce"] == INFO.reproduce
    assert run["config"]["_Group"] == "fables"
    assert [row["step"] for row in run["logs"]] == [0, 10, 20]
    for tag in METRICS:
        values = [(row["step"], row[tag]) for row in run["logs"] if tag in row]
        assert values == [(s, pytest.approx(v)) for s, v in expected(tag)], tag


def test_trackio_on_a_full_disk_goes_on_and_finishes_promptly(tmp_path, small_disk):
    pytest.importorskip("trackio")
    t0 = time.monotonic()
    code, lines, err = trackio_run(tmp_path, small_disk / "store", between=lambda: fill(small_disk))
    # trackio catches its own write errors and warns (once); the run ends, promptly, without a traceback.
    assert code == 0 and len(lines) == 2, err
    assert "Traceback" not in err and err.count("disk is full") == 1, err
    assert time.monotonic() - t0 < 20


# ---- a real run ---------------------------------------------------------------------------------


def test_train_logs_a_real_run_to_tensorboard_and_trackio(tmp_path):
    pytest.importorskip("tensorboard")
    pytest.importorskip("trackio")
    pytest.importorskip("tui_gpt.runs.recorder", reason="--log comes with the run registry (tui_gpt/runs/recorder.py)")
    env = trackio_env(tmp_path, tmp_path / "store")
    log = ["--log", "tensorboard,trackio", "--log-dir", "logs", "--no-record", "--out", "ck"]
    train = [sys.executable, "-m", "tui_gpt", "train", "fables", *TINY, "--steps", "20", *log]
    r = subprocess.run(train, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert "Trackio" not in r.stdout  # trackio's own lines stay out of train's output
    (folder,) = (tmp_path / "logs").iterdir()
    acc = accumulator(folder)
    assert [e.step for e in acc.Scalars("loss/val")] == [0, 10, 20]
    read = subprocess.run([sys.executable, "-c", TRACKIO_READ], env=env, capture_output=True, text=True, timeout=60)
    (run,) = json.loads(read.stdout)
    assert run["name"] == folder.name  # one name for the run in both tools
    logged = {row["step"]: row["loss/val"] for row in run["logs"]}
    assert logged == pytest.approx({e.step: e.value for e in acc.Scalars("loss/val")}, rel=1e-6)
