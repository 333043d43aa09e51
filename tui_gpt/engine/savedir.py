"""Where a checkpoint may be written: never over anything that tui-gpt did not write.

Torch-free, so the app and the CLI can refuse a bad `--out` before anything starts.
"""

from __future__ import annotations

import fcntl
import json
import os
import re
import shutil
import socket
import stat
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext, suppress
from pathlib import Path
from typing import Any

from tui_gpt.errors import TuiGptError, reason
from tui_gpt.settings import is_int, is_number

FORMAT = "tui-gpt-checkpoint/1"
FILES = ("model.safetensors", "optimizer.safetensors", "config.json", "tokenizer.json", "trainer.json", "history.json")
LOCK = ".lock"
OURS = frozenset((*FILES, LOCK))
# --keep best: the best val loss's checkpoint, a folder inside the run's own (RUN/best), written by the same
# atomic save; its saves' temp folders and the folder set aside mid-swap live beside it, in RUN.
BEST = "best"
RUST_TEMP = re.compile(r"\.tmp[A-Za-z0-9]{6}")
# What an export writes, in a temp folder named ".OUT.export-XXXX" until it is renamed to OUT.
EXPORT_FILES = frozenset(
    ("config.json", "model.safetensors", "generation_config.json", "tokenizer.json", "tokenizer_config.json")
)
EXPORT_INFIX = ".export-"
EXPORT_GRACE_S = 60  # an export's temp folder younger than this is never removed as an orphan
AUTOSAVE_SECONDS = 300  # train and the app save this often; 0 turns it off
MB = 1 << 20
# The most we read of each file (of a checkpoint, or of a Hugging Face folder); a larger one is refused, not read.
CAPS = {
    "config.json": MB,
    "trainer.json": MB,
    "history.json": 512 * MB,
    "tokenizer.json": 256 * MB,
    LOCK: 4096,
    "model.safetensors.index.json": 16 * MB,
    "vocab.json": 64 * MB,  # GPT-2's is 1 MB
    "merges.txt": 64 * MB,
}


def is_best_entry(folder: Path, name: str) -> bool:
    """Whether `folder/name` is a run's best/ checkpoint or what its saves leave beside it (.best.old, .best.tmp-)."""
    named = name in (BEST, f".{BEST}.old") or name.startswith(f".{BEST}.tmp-")
    entry = folder / name
    return named and entry.is_dir() and not entry.is_symlink() and _only_ours(entry)


def _ours(folder: Path, names: set[str], ours: frozenset[str] = OURS) -> bool:
    """Every name in `folder` is one of `ours`, or its best/ checkpoint's (is_best_entry)."""
    return all(n in ours or is_best_entry(folder, n) for n in names)


def is_checkpoint_dir(path: Path) -> bool:
    """True if `path` is a folder holding only checkpoint files (and a best/ checkpoint), with our config.json."""
    try:
        names = {p.name for p in path.iterdir()}
    except OSError:
        return False
    if "config.json" not in names or not _ours(path, names):
        return False
    try:
        return bool(json.loads(read_capped(path / "config.json", MB)).get("format") == FORMAT)
    except (OSError, TuiGptError, ValueError, AttributeError):
        return False


def checkpoint_around(path: Path) -> Path | None:
    """The checkpoint folder that is `path` or holds it, if any; one with only our lock (a run not yet saved) counts."""
    path = Path(path).expanduser().resolve()
    for folder in (path, *path.parents):
        if is_checkpoint_dir(folder) or ((folder / LOCK).is_file() and _only_ours(folder)):
            return folder
    return None


def check_out(out: Path) -> Path:
    """The resolved folder to save into; a one-line error if saving there could destroy anything."""
    out = Path(out).expanduser()
    if out.is_symlink() or (out.exists() and not out.is_dir()):
        raise TuiGptError(f"{out}: exists and is not a folder; pass --out a new folder or a tui-gpt checkpoint")
    out = out.resolve()
    if out.is_dir():
        try:
            # A run that never saved leaves its lock, and with --keep best its best/ checkpoint.
            empty = _ours(out, {p.name for p in out.iterdir()}, frozenset((LOCK,)))
        except OSError as exc:
            raise TuiGptError(f"{out}: cannot be read ({exc.strerror}); pass --out another folder") from None
        if not empty and not is_checkpoint_dir(out):
            raise TuiGptError(
                f"{out}: holds files that are not a tui-gpt checkpoint; tui-gpt saves only into a new folder, "
                "an empty one or one of its own checkpoints"
            )
    old = aside(out)
    if old.exists() and not (is_checkpoint_dir(old) or (out.is_dir() and _only_ours(old))):
        raise TuiGptError(f"{old}: in the way and not a tui-gpt checkpoint; move it, or pass --out another folder")
    return out


def _only_ours(folder: Path, ours: frozenset[str] = OURS) -> bool:
    """A folder holding nothing but files named in `ours`: what a killed save or delete of ours leaves."""
    try:
        names = {p.name for p in folder.iterdir()} if folder.is_dir() and not folder.is_symlink() else None
    except OSError:
        return False
    # safetensors writes through a ".tmpXXXXXX" file of its own, which a kill leaves behind
    return names is not None and all(n in ours or RUST_TEMP.fullmatch(n) for n in names)


def carry_best(src: Path, dst: Path) -> None:
    """Move the best/ checkpoint (and its saves' leftovers) from a run folder a save has replaced into the new one."""
    if not src.is_dir():
        return
    for entry in src.iterdir():
        if is_best_entry(src, entry.name) and not (dst / entry.name).exists():
            entry.rename(dst / entry.name)


def aside(out: Path) -> Path:
    """Where the previous checkpoint waits while a save moves the new one in."""
    return out.with_name(f".{out.name}.old")


def new_folders(folder: Path) -> list[Path]:
    """`folder` and those of its parents that do not exist yet, deepest first: what a mkdir -p would make."""
    return [p for p in (folder, *folder.parents) if not p.exists() and not p.is_symlink()]


def remove_new(made: list[Path], *names: str) -> None:
    """Undo a failed write into folders it made (new_folders): remove `names` in the deepest, then the
    folders while they are empty. Nothing that was there before is touched."""
    if not made:
        return
    for name in names:
        with suppress(OSError):
            (made[0] / name).unlink(missing_ok=True)
    for folder in made:
        try:
            folder.rmdir()
        except FileNotFoundError:
            continue  # the mkdir failed before it
        except OSError:
            return  # not empty: someone else's now


def temp_prefix(out: Path) -> str:
    return f".{out.name}.tmp-"


def remove_orphans(out: Path) -> None:
    """Delete temp folders that killed saves into `out` left behind, if they hold only our files."""
    if CheckpointLock.held(out) is None:  # without it, another process's save in progress looks like an orphan
        raise RuntimeError(f"remove_orphans({out}) needs the folder's CheckpointLock")
    for tmp in out.parent.glob(temp_prefix(out) + "*"):
        try:
            carry_best(tmp, out)  # a save killed mid-swap may have left the best/ checkpoint in it
            if _only_ours(tmp):
                shutil.rmtree(tmp)
        except OSError:
            pass  # someone else's, or gone already: leave it


@contextmanager
def export_folder(out: Path) -> Iterator[Path]:
    """A new temp folder beside `out` for an export to fill and rename to `out`; removed if the export fails.

    It is flocked while the export runs (the kernel drops the lock with a killed process), so
    that the next export into the same parent removes it only once nobody writes it.
    """
    remove_export_orphans(out.parent)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}{EXPORT_INFIX}", dir=out.parent))
    fd = os.open(tmp, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield tmp
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    finally:
        os.close(fd)


def remove_export_orphans(parent: Path) -> None:
    """Delete the temp folders killed exports left in `parent`: unlocked, idle a while, holding only export files."""
    for tmp in parent.glob(f".*{EXPORT_INFIX}*"):
        try:
            # A folder made a moment ago may not be locked yet by its export.
            if not _only_ours(tmp, EXPORT_FILES) or time.time() - tmp.stat().st_mtime < EXPORT_GRACE_S:
                continue
            fd = os.open(tmp, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)  # BlockingIOError: a live export writes it
                shutil.rmtree(tmp)
            finally:
                os.close(fd)
        except OSError:
            pass  # being written, someone else's, or gone already: leave it


@contextmanager
def regular_file(path: Path) -> Iterator[int]:
    """A file descriptor of `path` if it is a regular file; a one-line error otherwise.

    Never blocks on a FIFO or reads a device: the file is opened non-blocking and checked before reading.
    """
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY)
    except FileNotFoundError:
        raise
    except OSError as exc:
        raise TuiGptError(f"{path}: cannot be read ({exc.strerror}); check its permissions") from None
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise TuiGptError(f"{path}: not a regular file (a FIFO, device or folder); it cannot be used")
        os.set_blocking(fd, True)
        yield fd
    finally:
        os.close(fd)


def read_capped(path: Path, cap: int) -> bytes:
    """The bytes of `path` if it is a regular file of at most `cap` bytes; a one-line error otherwise."""
    with regular_file(path) as fd:
        size = os.fstat(fd).st_size
        if size > cap:
            raise TuiGptError(f"{path}: {size:,} bytes, more than the {cap:,} allowed; not read")
        try:
            with os.fdopen(os.dup(fd), "rb") as f:
                data = f.read(cap + 1)
        except OSError as exc:
            raise TuiGptError(f"{path}: cannot be read ({exc.strerror}); check the file") from None
    if len(data) > cap:  # grew while we read it
        raise TuiGptError(f"{path}: more than the {cap:,} bytes allowed; not read")
    return data


def best_val(path: Path) -> tuple[int, float] | None:
    """(step, val loss) that checkpoint `path`'s trainer.json records as its best evaluation; None if none."""
    try:
        best = json.loads(read_capped(Path(path) / "trainer.json", CAPS["trainer.json"]))["best_val"]
        step, loss = best["step"], best["loss"]
    except (OSError, TuiGptError, ValueError, KeyError, TypeError):
        return None
    return (step, float(loss)) if is_int(step) and is_number(loss) else None


class Autosave:
    """When a run saves by itself, in `train` and in the app's trainer: `every` seconds (0: never) after
    the last save, once there is a step it did not save."""

    def __init__(self, every: float, saved_step: int | None = None) -> None:
        self.every = every
        self.last = time.monotonic()  # when the last save was
        self.step = saved_step  # the step it saved; None: none yet

    def unsaved(self, step: int) -> bool:
        return step != self.step

    def due(self, step: int) -> bool:
        return bool(self.every) and self.unsaved(step) and time.monotonic() - self.last >= self.every

    def saved(self, step: int | None) -> None:
        """A save was made now, of `step` (None: it failed, and no step is saved)."""
        self.last, self.step = time.monotonic(), step


def write_json(path: Path, obj: object) -> None:
    """Write `obj` to `path` as indented JSON: the one writer of checkpoint and export files."""
    path.write_text(json.dumps(obj, indent=2) + "\n", encoding="utf-8")


def read_json(path: Path, missing: str, unusable: str = "") -> dict[str, Any]:
    """The JSON object in regular file `path`, read within its CAPS; one line naming the file otherwise.

    `missing` ends the line for a missing file, `unusable` (say, "; the checkpoint cannot be used") a corrupt one.
    Its values are as parsed (Any): each caller checks the ones it uses.
    """
    try:
        data = json.loads(read_capped(path, CAPS.get(path.name, MB)).decode("utf-8"))
    except FileNotFoundError:
        raise TuiGptError(f"{path}: {missing}") from None
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as exc:  # RecursionError: nested too deep
        raise TuiGptError(f"{path}: corrupt ({type(exc).__name__}){unusable}") from None
    if not isinstance(data, dict):
        raise TuiGptError(f"{path}: corrupt (not a JSON object){unusable}")
    return data


_held: dict[Path, CheckpointLock] = {}


class CheckpointLock:
    """One writer per checkpoint folder: an flock on `out/.lock`, held while a run writes there.

    A second process gets a one-line error naming the holder; the lock of a dead process is free,
    since the kernel drops an flock with its owner. Re-entrant within a process. Saves carry the lock
    file into the new folder as a hard link, so the lock survives the swap of folders.
    """

    def __init__(
        self,
        out: Path,
        advice: str = "wait for it or pass --out another folder",
        unwritable: str = "pass --out another folder",
    ) -> None:
        self.out = Path(out).expanduser().resolve()
        self.advice = advice  # what to do when another process holds it
        self.unwritable = unwritable  # and when the disk is full or read-only
        self.fd: int | None = None
        self.depth = 0
        self.made: list[Path] = []  # the folders taking it made (or that held only a lock): removed if unused

    @staticmethod
    def held(out: Path) -> CheckpointLock | None:
        """This process's lock on `out`, if it holds one."""
        return _held.get(Path(out).expanduser().resolve())

    def __enter__(self) -> CheckpointLock:
        mine = _held.get(self.out)
        if mine is not None and mine is not self:
            mine.depth += 1
            self.fd, self.depth = mine.fd, -1  # a view of the outer lock
            return self
        if self.depth:
            self.depth += 1
            return self
        check_out(self.out)
        self._check_aside()
        made = new_folders(self.out)
        if not made and _only_lock(self.out):  # a run that never saved made it: ours to remove again
            made = [self.out]
        fd = None
        try:
            fd = self._take()
            os.ftruncate(fd, 0)
            cmd = " ".join(["tui-gpt", *sys.argv[1:]])[:200]
            os.write(fd, json.dumps({"pid": os.getpid(), "host": socket.gethostname(), "cmd": cmd}).encode())
        except OSError as exc:  # a read-only or full disk: leave no folder or lock file of ours behind
            if fd is not None:
                os.close(fd)
            remove_new(made, LOCK)
            raise TuiGptError(f"{self.out}: cannot write there ({reason(exc)}); {self.unwritable}") from None
        self.fd, self.depth, self.made = fd, 1, made
        _held[self.out] = self
        return self

    def _take(self) -> int:
        """Create the folder and its lock file, and lock it; the locked file descriptor."""
        for _ in range(10):
            self.out.mkdir(parents=True, exist_ok=True)
            path = self.out / LOCK
            try:
                fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o644)
            except FileNotFoundError:  # an unused folder removed as its run ended: make it again
                continue
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)
                raise TuiGptError(f"{self.out}: {_holder(path)}; {self.advice}") from None
            try:
                same = os.stat(path, follow_symlinks=False).st_ino == os.fstat(fd).st_ino
            except OSError:
                same = False
            if same:  # else a save swapped the folder while we locked: try again
                return fd
            os.close(fd)
        raise TuiGptError(f"{self.out}: could not take the lock; the folder keeps changing")

    def _check_aside(self) -> None:
        """A save between its renames has the folder aside, with the lock in it."""
        old = aside(self.out) / LOCK
        if self.out.exists() or not old.exists():
            return
        try:
            fd = os.open(old, os.O_RDONLY | os.O_NOFOLLOW)
        except OSError:
            return
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            raise TuiGptError(f"{self.out}: {_holder(old)}; {self.advice}") from None
        finally:
            os.close(fd)

    def __exit__(self, *exc: object) -> None:
        if self.depth == -1:
            outer = _held.get(self.out)
            if outer is not None:
                outer.__exit__()
            self.fd, self.depth = None, 0
            return
        self.depth -= 1
        if self.depth > 0 or self.fd is None:
            return
        # A checkpoint's lock file stays: removing it would let a process that opened it lock a file no
        # one else sees. A folder that never got one goes (a refused start, a tab closed at once): the
        # lock is still ours while it does, and _take checks the file it locked is still the folder's.
        if _only_lock(self.out):
            with suppress(OSError):
                (self.out / LOCK).unlink()
                remove_new(self.made)
        os.close(self.fd)
        self.fd = None
        _held.pop(self.out, None)


@contextmanager
def reading(ckpt: Path) -> Iterator[None]:
    """Hold checkpoint `ckpt` still while it is read, so that no save swaps or deletes its files meanwhile.

    Takes its CheckpointLock: a run writing there is the lock's usual one line naming it. A folder
    that no save can write needs none (and taking it could fail or create the folder): see _saveable.
    """
    folder = Path(ckpt).expanduser().resolve()
    lock = CheckpointLock(folder, advice="wait for it to finish", unwritable="free some space: reading takes its lock")
    with lock if _saveable(folder) else nullcontext():
        yield


def _saveable(folder: Path) -> bool:
    """Whether a save could write `folder` now: it exists (or waits aside), is writable and check_out takes it."""
    here = folder if folder.is_dir() else folder.parent
    if not (folder.is_dir() or aside(folder).is_dir()) or not os.access(here, os.W_OK):
        return False  # missing (loading says so), or read-only: no save can swap files under a reader
    try:
        check_out(folder)
    except TuiGptError:
        return False  # foreign files or a foreign folder aside: every save there is refused too
    return True


def _only_lock(folder: Path) -> bool:
    """A real folder holding our lock and nothing else: a run's folder before its first save."""
    try:
        return not folder.is_symlink() and {p.name for p in folder.iterdir()} == {LOCK}
    except OSError:
        return False


def checkpoint_run_id(folder: Path) -> str | None:
    """The id of the run that saved the checkpoint in `folder` (its trainer.json's "run"), if it has one."""
    try:
        ident = json.loads(read_capped(Path(folder) / "trainer.json", CAPS["trainer.json"])).get("run")
    except (OSError, TuiGptError, ValueError, AttributeError, RecursionError):
        return None
    return ident if isinstance(ident, str) and ident else None


def fresh_sibling(out: Path) -> Path:
    """The first of OUT-2, OUT-3, ... beside `out` that is free: for a new run that must not replace `out`."""
    out = Path(out).expanduser().resolve()
    for n in range(2, 10_000):
        candidate = out.with_name(f"{out.name}-{n}")
        if not candidate.exists() and not candidate.is_symlink() and not aside(candidate).exists():
            return candidate
    raise TuiGptError(f"{out}: no free folder beside it for a new run; pass --out another folder")


def _holder(path: Path) -> str:
    try:
        who = json.loads(read_capped(path, CAPS[LOCK]))
        return f"in use by pid {who['pid']} on {who['host']} ({who['cmd']})"
    except (OSError, TuiGptError, ValueError, KeyError, TypeError):
        return "in use by another tui-gpt process"


def discard_unsaved(folder: Path) -> bool:
    """Remove `folder` if no run ever saved into it (nothing in it but a lock no one holds); True if removed.

    For a folder made for a run that then ended before its first save: a served tab closed at once,
    or an app that refused its text. A folder with anything else in it, or whose lock is held, stays.
    """
    folder = Path(folder)
    try:
        names = {p.name for p in folder.iterdir()} if not folder.is_symlink() else None
    except OSError:
        return False
    if names is None or not names <= {LOCK}:
        return False
    if names:
        try:
            fd = os.open(folder / LOCK, os.O_RDONLY | os.O_NOFOLLOW)
        except OSError:
            return False
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)  # taken: no run holds it, none can start saving
            (folder / LOCK).unlink()
        except OSError:  # held (BlockingIOError), or gone
            return False
        finally:
            os.close(fd)
    try:
        folder.rmdir()
    except OSError:  # something arrived meanwhile: it stays
        return False
    return True
