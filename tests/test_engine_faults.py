"""Faults: saves killed at random moments, a full disk, two writers, and signals to a headless run."""

from __future__ import annotations

import json
import os
import random
import select
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace

import pytest
from test_engine_cli import TINY

from tui_gpt.commands.cli import main
from tui_gpt.engine import tokencache
from tui_gpt.engine.checkpoint import load_model, load_trainer
from tui_gpt.engine.corpus import Corpus, load_corpus
from tui_gpt.engine.dataset import TokenData
from tui_gpt.engine.savedir import LOCK, CheckpointLock
from tui_gpt.engine.session import open_run
from tui_gpt.engine.tokenizer import TextTokenizer
from tui_gpt.errors import TuiGptError

# ---- SIGKILL at random moments -------------------------------------------------------------------


# The savers are forked from one fresh interpreter that has torch imported and the run built: a save
# killed at a random moment is the same in a forked child, and a fork costs milliseconds where an
# interpreter's start costs seconds. Never forked from the test process, whose torch and tokenizer
# threads can deadlock a forked child before it runs a line: this one checks it has no thread but its
# own (OPENBLAS_NUM_THREADS=1 keeps numpy's BLAS from starting one) before each fork.
SAVERS = """
import json, os, sys
from pathlib import Path

import torch

from tui_gpt.engine.session import open_run
from tui_gpt.settings import RunSpec

torch.set_num_threads(1)
spec = RunSpec(n_layer=1, n_head=2, n_embd=16, block_size=16,
               train={"batch_size": 4, "dtype": "float32", "device": "cpu", "eval_interval": 0})
run = open_run(spec)
for line in sys.stdin:  # a JSON list of targets: fork a saver for them; "reap": wait for the killed one
    if line.strip() == "reap":
        os.waitpid(pid, 0)
        print("reaped", flush=True)
        continue
    threads = os.listdir("/proc/self/task")
    assert len(threads) == 1, f"threads before a fork: {threads}"
    pid = os.fork()
    if pid == 0:
        targets = [Path(p) for p in json.loads(line)]
        print("pid", os.getpid(), flush=True)
        i = 0
        while True:  # train a step, save to the next target, report; until killed
            run.trainer.train_step()
            run.save(targets[i % len(targets)])
            print(i, flush=True)
            i += 1
"""


def _wait_line(child: subprocess.Popen, timeout: float) -> bool:
    ready, _, _ = select.select([child.stdout], [], [], timeout)
    return bool(ready) and bool(child.stdout.readline())


def _orphans(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if ".tmp-" in p.name)


def _fork_saver(savers: subprocess.Popen, targets: list[Path]) -> int:
    """Start a saver for `targets`; its pid."""
    savers.stdin.write(json.dumps([str(t) for t in targets]) + "\n")
    savers.stdin.flush()
    word, pid = savers.stdout.readline().split()
    assert word == "pid"
    return int(pid)


def _kill_saver(savers: subprocess.Popen, pid: int) -> None:
    """SIGKILL the saver and wait until it is gone; the lines it wrote meanwhile are dropped."""
    os.kill(pid, signal.SIGKILL)
    savers.stdin.write("reap\n")
    savers.stdin.flush()
    while (line := savers.stdout.readline()) != "reaped\n":
        assert line, "the saver server died"


def test_saves_killed_at_random_moments_always_leave_a_loadable_checkpoint(tmp_path, fables_run):
    rng = random.Random(8)
    targets = [tmp_path / "ck", tmp_path / "other"]  # both overwritten again and again
    saves = kills = torn = 0
    fresh = 0
    env = {**os.environ, "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1"}
    argv = [sys.executable, "-c", SAVERS]
    with subprocess.Popen(argv, env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True) as savers:
        while saves < 60 or kills < 12:
            fresh_target = tmp_path / f"new{fresh}"  # a folder that did not exist yet
            fresh += 1
            left = set(_orphans(tmp_path))
            pid = _fork_saver(savers, [fresh_target, *targets])
            try:  # let it save a few times, then kill it somewhere inside a save
                for _ in range(rng.randrange(3, 8)):
                    if _wait_line(savers, 60):
                        saves += 1
                time.sleep(rng.uniform(0, 0.02))
            finally:
                _kill_saver(savers, pid)
            kills += 1
            torn += bool(set(_orphans(tmp_path)) - left or list(tmp_path.glob(".*.old")))  # killed inside a save
            for t in [fresh_target, *targets]:
                if (t / "config.json").exists() or (t.parent / f".{t.name}.old").exists():
                    model, tok, _ = load_model(t)  # whatever the moment, a whole checkpoint is there
                    assert tok.vocab_size == model.config.vocab_size
        savers.stdin.close()  # the server's loop ends
    assert savers.returncode == 0
    # The dead children's locks are stale, and the next save in each place takes them over and tidies up.
    for t in targets:
        fables_run.save(t)
        assert load_trainer(t, fables_run.data, device="cpu").step == fables_run.trainer.step
    for i in range(fresh):
        fables_run.save(tmp_path / f"new{i}")
    assert _orphans(tmp_path) == [], [sorted(os.listdir(tmp_path / o)) for o in _orphans(tmp_path)]
    assert not list(tmp_path.glob(".*.old"))
    assert saves >= 60 and kills >= 12
    print(f"{saves} saves, {kills} kills, {torn} inside a save")
    assert torn >= 3, "too few kills landed inside a save to prove anything"


# ---- a full disk ---------------------------------------------------------------------------------


def _tmpfs(mnt: Path, options: str) -> Iterator[Path]:
    """A tmpfs mounted at `mnt` with `options`, where one can be (root on Linux); the test is skipped elsewhere."""
    mnt.mkdir()
    try:
        r = subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(mnt)], capture_output=True)
    except OSError:
        pytest.skip("no mount command")
    if r.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {r.stderr.decode().strip()}")
    yield mnt
    subprocess.run(["umount", str(mnt)], check=False)


@pytest.fixture
def small_disk(tmp_path):
    """A 1 MB disk."""
    yield from _tmpfs(tmp_path / "disk", "size=1m")


@pytest.fixture
def read_only_disk(tmp_path):
    """A read-only disk: chmod would not stop root, a read-only mount does."""
    yield from _tmpfs(tmp_path / "ro", "size=1m,ro")


def fill(disk: Path) -> None:
    """Fill `disk` up to its last byte."""
    fd = os.open(disk / "fill", os.O_WRONLY | os.O_CREAT)
    try:
        while os.write(fd, bytes(1 << 16)):
            pass
    except OSError:
        pass  # full
    finally:
        os.close(fd)


def one_line(capsys, *argv: str) -> str:
    """The one line of `tui-gpt ARGV`, which must fail with it (in this process)."""
    assert main(list(argv)) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err
    (line,) = err.strip().splitlines()
    assert line.startswith("tui-gpt: error: ")
    return line


def test_a_full_disk_keeps_the_previous_checkpoint(small_disk, fables_run, make_spec, one_line_error):
    out = fables_run.save(small_disk / "ck")  # a tiny model fits
    big = open_run(make_spec(n_embd=128, n_layer=2, n_head=2))  # about 5 MB of weights and moments: it does not
    list(big.trainer.run(steps=1))
    with pytest.raises(TuiGptError) as info:
        big.save(out)
    msg = one_line_error(info.value, str(out))
    assert "no space left on device; the previous checkpoint at step 0 is intact" in msg
    assert _orphans(small_disk) == [] and sorted(os.listdir(small_disk)) == ["ck"]
    model, _, _ = load_model(out)
    assert model.config.n_embd == fables_run.trainer.model.config.n_embd
    list(fables_run.trainer.run(steps=2))
    fables_run.save(out)  # room for the small one again: the next save works
    assert json.loads((out / "trainer.json").read_text())["step"] == 2


def test_train_says_why_a_save_failed_and_keeps_going(small_disk, tmp_path):
    big = ["--n-layer", "2", "--n-embd", "128", "--n-head", "2", "--block-size", "16", "--batch-size", "2"]
    big += ["--dtype", "float32", "--threads", "1"]
    r = tui_gpt("train", "--steps", "3", *big, "--eval-interval", "3", "--eval-iters", "1", "--out", "disk/ck")
    assert r.returncode == 1, r.stderr
    assert "Traceback" not in r.stderr
    failures = [line for line in r.stderr.splitlines() if "could not save to" in line]
    assert len(failures) == 3, r.stderr  # at the evaluations at steps 0 and 3, and the last save's retry
    assert all("no space left on device; nothing saved" in line for line in failures), failures
    assert "step      3" in r.stderr  # it trained on after the first failure
    assert _orphans(small_disk) == []


def test_export_to_a_full_or_read_only_disk_is_one_line_and_leaves_nothing(
    small_disk, read_only_disk, tmp_path, make_spec, capsys
):
    big = open_run(make_spec(n_embd=128, n_layer=2, n_head=2)).save(tmp_path / "big")  # 1.6 MB of weights
    out = small_disk / "new" / "hf"  # its folders too are made, and must go
    line = one_line(capsys, "export", str(big), str(out))
    assert line.endswith(f"could not export to {out}: no space left on device; nothing written")
    assert os.listdir(small_disk) == []
    line = one_line(capsys, "export", str(big), str(read_only_disk / "hf"))
    assert line.endswith("read-only file system; nothing written")
    load_model(big)  # the checkpoint is as it was


def test_train_out_on_a_full_or_read_only_disk_is_one_line_before_any_work(small_disk, read_only_disk, capsys):
    train = ["train", "fables", *TINY, "--steps", "1"]
    line = one_line(capsys, *train, "--out", str(read_only_disk / "ck"))
    assert line.endswith(
        f"{read_only_disk / 'ck'}: cannot write there (read-only file system); pass --out another folder"
    )
    fill(small_disk)
    out = small_disk / "new" / "ck"
    line = one_line(capsys, *train, "--out", str(out))
    assert f"{out}: cannot write there (no space left on device)" in line
    assert os.listdir(small_disk) == ["fill"]  # neither the folders nor the lock file stay


def _corpus(tmp_path: Path, chars: int) -> tuple[Corpus, TextTokenizer]:
    path = tmp_path / "text.txt"
    path.write_text(("The fox ran to the river. " * (chars // 26 + 1))[:chars], encoding="utf-8")
    corpus = load_corpus([str(path)])
    return corpus, TextTokenizer.train("char", corpus.texts)


def _cache_files(folder: Path) -> list[str]:
    """The entries and temp files in a token cache folder."""
    return sorted(p.name for p in folder.iterdir() if ".tokens" in p.name or ".val" in p.name)


def test_the_token_cache_is_refused_where_its_build_would_not_fit(small_disk, tmp_path, monkeypatch, one_line_error):
    """500,000 characters make an entry of 1.0 MB, which fits the 1 MB disk; the build's 1.1 MB peak does not."""
    monkeypatch.setenv("TUI_GPT_CACHE", str(small_disk))
    corpus, tok = _corpus(tmp_path, 500_000)
    assert (corpus.size + 2) * tok.dtype.itemsize < shutil.disk_usage(small_disk).free  # the old check let it start
    with pytest.raises(TuiGptError) as info:
        TokenData.build(corpus, tok)
    assert "the token cache needs about" in one_line_error(info.value, str(small_disk))
    assert _cache_files(small_disk) == []


def test_a_token_cache_build_the_disk_stops_is_one_line_and_leaves_nothing(
    small_disk, read_only_disk, tmp_path, monkeypatch, one_line_error
):
    corpus, tok = _corpus(tmp_path, 500_000)
    # The space check sees room, as it would before another writer filled the disk.
    monkeypatch.setattr(tokencache.shutil, "disk_usage", lambda path: SimpleNamespace(free=10**12))
    for disk, says in [
        (small_disk, "(no space left on device); free some space"),
        (read_only_disk, "(read-only file system); set TUI_GPT_CACHE to a writable folder"),
    ]:
        monkeypatch.setenv("TUI_GPT_CACHE", str(disk))
        with pytest.raises(TuiGptError) as info:
            TokenData.build(corpus, tok)
        assert f"{disk}: cannot write the token cache {says}" in one_line_error(info.value, str(disk))
        assert _cache_files(disk) == []


# ---- one writer per checkpoint, and signals to `train` -------------------------------------------


def tui_gpt(*args: str) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "tui_gpt", *args]
    return subprocess.run(cmd, cwd=_cwd[0], env=env(), capture_output=True, text=True, timeout=120)


def env() -> dict[str, str]:
    """Made when called, not when the module is imported: by then conftest has set the temporary token
    cache and run registry (TUI_GPT_CACHE, TUI_GPT_DATA), which are never the user's."""
    return {**os.environ, "OMP_NUM_THREADS": "1", "COLUMNS": "200", "PYTHONIOENCODING": "utf-8"}


_cwd: list[Path] = []


@pytest.fixture(autouse=True)
def _in_tmp(tmp_path):
    _cwd[:] = [tmp_path]


def start_train(tmp_path: Path, *args: str) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "tui_gpt", "train", "fables", *TINY, "--steps", "1000000", *args]
    return subprocess.Popen(cmd, cwd=tmp_path, env=env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def wait_for(what, timeout: float = 60) -> None:
    end = time.monotonic() + timeout
    while not what():
        assert time.monotonic() < end, "timed out"
        time.sleep(0.05)


def saved_step(ck: Path) -> int:
    return json.loads((ck / "trainer.json").read_text())["step"]


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGHUP, signal.SIGINT], ids=lambda s: s.name)
def test_a_signal_saves_the_run_and_exits(tmp_path, sig):
    # No evaluations: the first save is the autosave timer's.
    proc = start_train(tmp_path, "--out", "ck", "--eval-interval", "0", "--autosave", "0.5")
    ck = tmp_path / "ck"
    try:
        wait_for(lambda: (ck / "trainer.json").exists())
        first = saved_step(ck)
        if sig == signal.SIGTERM:  # meanwhile a second writer is refused, naming the first
            r = tui_gpt("train", "fables", *TINY, "--steps", "5", "--out", "ck")
            assert r.returncode == 2, r.stderr
            assert r.stderr.count("\n") == 1 and "Traceback" not in r.stderr, r.stderr
            assert f"in use by pid {proc.pid}" in r.stderr and "tui-gpt train fables" in r.stderr, r.stderr
        time.sleep(0.3)
        proc.send_signal(sig)
        _, err = proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert proc.returncode == 128 + sig, err
    assert "Traceback" not in err
    last = saved_step(ck)
    assert last > first
    assert f"stopped by {sig.name}; saved step {last} to {ck}" in err or f"{sig.name}; step {last} is saved" in err
    assert _orphans(tmp_path) == []
    load_model(ck)
    with CheckpointLock(ck):  # the lock of the exited run is free
        pass


def test_two_writers_in_one_process_share_the_lock_and_another_process_is_refused(tmp_path, fables_run):
    ck = tmp_path / "ck"
    with CheckpointLock(ck) as lock:
        fables_run.save(ck)  # the run's own saves go through its lock
        fables_run.save(ck)
        holder = json.loads((ck / LOCK).read_text())
        assert holder["pid"] == os.getpid()
        code = f"from tui_gpt.engine.savedir import CheckpointLock\nwith CheckpointLock({str(ck)!r}): pass"
        r = subprocess.run([sys.executable, "-c", code], env=env(), capture_output=True, text=True, timeout=60)
        assert r.returncode != 0 and f"in use by pid {os.getpid()}" in r.stderr, r.stderr
        assert lock.fd is not None
    r = subprocess.run([sys.executable, "-c", code], env=env(), capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr


def test_a_folder_with_only_a_stale_lock_is_a_fine_place_to_save(tmp_path, fables_run):
    ck = tmp_path / "ck"
    ck.mkdir()
    (ck / LOCK).write_text('{"pid": 1, "host": "gone", "cmd": "tui-gpt train"}')
    fables_run.save(ck)
    load_model(ck)


def test_a_save_moves_the_lock_with_the_folder(tmp_path, fables_run):
    ck = tmp_path / "ck"
    with CheckpointLock(ck):
        before = os.stat(ck / LOCK).st_ino
        fables_run.save(ck)
        assert os.stat(ck / LOCK).st_ino == before  # the same file: still locked by us
