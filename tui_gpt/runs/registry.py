"""The run registry: every run's settings, evaluations and end, in one SQLite file under the user's data folder.

Torch-free and Textual-free: `train`, `bench`, the app's trainer and `sweep` write it through
`RegistrySink`; `tui-gpt runs` and the app read it through `Registry.runs`. Several processes may
write at once (WAL, a busy timeout). A file that is not a tui-gpt registry is refused in one line
and never written to.
"""

from __future__ import annotations

import hashlib
import json
import os
import socket
import sqlite3
import stat
import threading
import time
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from tui_gpt.errors import TuiGptError, env_path, env_path_or
from tui_gpt.runs.tracking import EvalRow, RunEnd, RunInfo
from tui_gpt.settings import OPTIONS, STEPS

FILE_NAME = "runs.sqlite"
APPLICATION_ID = 0x54475054  # "TGPT" in the file's header: how a foreign SQLite file is told from ours
SCHEMA_VERSION = 1  # PRAGMA user_version: a newer tui-gpt's registry is refused, never rewritten
BUSY_SECONDS = 30.0  # how long a writer waits for another process's transaction to end
SQLITE_MAGIC = b"SQLite format 3\x00"
STATUSES = ("running", "done", "stopped", "failed", "killed")  # killed: 'running', but its process is gone
SCHEMA = """
CREATE TABLE runs (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    started REAL NOT NULL,
    status TEXT NOT NULL,
    kind TEXT NOT NULL,
    text_digest TEXT NOT NULL,
    info TEXT NOT NULL,
    finish TEXT,
    pid INTEGER,
    host TEXT
);
CREATE INDEX runs_by_text ON runs (text_digest);
CREATE TABLE evals (
    run INTEGER NOT NULL REFERENCES runs (id) ON DELETE CASCADE,
    step INTEGER NOT NULL,
    row TEXT NOT NULL
);
CREATE INDEX evals_by_run ON evals (run, step);
"""


def registry_path() -> Path:
    """$TUI_GPT_DATA/runs.sqlite, else $XDG_DATA_HOME/tui-gpt/runs.sqlite, else ~/.local/share/tui-gpt/runs.sqlite."""
    if folder := env_path("TUI_GPT_DATA"):
        return folder / FILE_NAME
    base = env_path_or("XDG_DATA_HOME", "~/.local/share")
    return base / "tui-gpt" / FILE_NAME


def _from_dict(cls: type, d: dict) -> Any:
    """A tracking dataclass from JSON, ignoring fields a newer tui-gpt added."""
    names = {f.name for f in fields(cls)}
    return cls(**{k: v for k, v in d.items() if k in names})


@dataclass
class RunRecord:
    """One run as the registry holds it."""

    id: int
    started: float  # unix time
    status: str  # one of STATUSES
    info: RunInfo
    evals: list[EvalRow] = field(default_factory=list)
    end: RunEnd | None = None
    pid: int | None = None
    host: str = ""
    damaged: str = ""  # why the registry could not read all of this row ("" when it could): `runs` shows it

    @property
    def final(self) -> EvalRow | None:
        """The last evaluation, if any."""
        return self.evals[-1] if self.evals else None

    @property
    def key(self) -> str:
        """What makes two runs the same run: `run_key` of its settings and text."""
        return run_key(self.info.settings, self.info.text_digest)

    def to_dict(self) -> dict:
        return asdict(self)


def run_key(settings: dict, text_digest: str) -> str:
    """A digest of a run's settings and text: a sweep skips a run whose key is already done.

    Where the text came from (`sources`) and what a run resumed from are left out: the text digest
    says what it trained on.
    """
    kept = {k: v for k, v in settings.items() if k not in ("sources", "resume", "given")}
    if isinstance(kept.get("train"), dict):  # how often heads are read changes nothing a run learns
        kept["train"] = {k: v for k, v in kept["train"].items() if k != "head_interval"}
    blob = json.dumps([kept, text_digest], sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


REUSED_SLACK = 60.0  # seconds a process may seem to start after its run did (clock steps) and still be it


def _process_start(pid: int) -> float | None:
    """When process `pid` started, in unix time, where Linux's /proc says; None where it cannot tell."""
    try:
        stat_line = Path(f"/proc/{pid}/stat").read_text()
        boot = next(float(line.split()[1]) for line in Path("/proc/stat").read_text().splitlines()
                    if line.startswith("btime "))  # fmt: skip
        ticks = int(stat_line.rpartition(")")[2].split()[19])  # field 22, starttime; the name may hold spaces
        return boot + ticks / os.sysconf("SC_CLK_TCK")
    except (OSError, StopIteration, ValueError, IndexError):
        return None


def _alive(pid: int | None, host: str | None, started: float | None = None) -> bool:
    """Whether a run's process may still be running: always, when it ran on another machine.

    A live pid that started after the run did is another process that reused the number: the run is gone.
    """
    if not pid or host != socket.gethostname():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        pass
    since = _process_start(pid)
    return not (started is not None and since is not None and since > started + REUSED_SLACK)


class Registry:
    """The run registry at `path` (default: `registry_path()`), created on first use.

    Refuses, in one line and without touching it, a folder, a FIFO, an unreadable or read-only file,
    a file that is not SQLite, a corrupt one, another program's SQLite database, or a newer
    tui-gpt's. Safe to share between threads; every write is its own short transaction.
    """

    def __init__(self, path: Path | None = None) -> None:
        self.path = Path(path).expanduser() if path is not None else registry_path()
        self._lock = threading.Lock()
        self._db = self._guard(self._open)

    # ---- opening --------------------------------------------------------------------
    def _fail(self, why: str) -> TuiGptError:
        return TuiGptError(f"{self.path}: {why}; the run registry is left as it is (move it away, or set TUI_GPT_DATA)")

    def _guard(self, work: Any, *args: Any) -> Any:
        """Run `work`, turning SQLite's and the OS's errors into the one-line error."""
        try:
            return work(*args)
        except sqlite3.DatabaseError as exc:
            why = str(exc) or type(exc).__name__
            if "not a database" in why or "malformed" in why:
                why = "is corrupt or not a tui-gpt run registry"
            raise self._fail(why) from None
        except OSError as exc:
            raise self._fail(exc.strerror or str(exc)) from None

    def _check_file(self) -> None:
        """Refuse what SQLite must not open: it would hang on a FIFO, or write to a file that is not ours."""
        try:
            st = self.path.stat()
        except FileNotFoundError:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            return
        if not stat.S_ISREG(st.st_mode):
            raise self._fail("is not a file" if not stat.S_ISDIR(st.st_mode) else "is a folder, not a file")
        # The mode bits too: root may read and write any file, but a file marked read-only stays so.
        if not os.access(self.path, os.R_OK) or not st.st_mode & stat.S_IRUSR:
            raise self._fail("cannot be read")
        if not os.access(self.path, os.W_OK) or not st.st_mode & stat.S_IWUSR:
            raise self._fail("is read-only")
        with self.path.open("rb") as f:
            head = f.read(len(SQLITE_MAGIC))
        if head and head != SQLITE_MAGIC:
            raise self._fail("is not an SQLite database, so not a tui-gpt run registry")

    def _open(self) -> sqlite3.Connection:
        self._check_file()
        db = sqlite3.connect(self.path, timeout=BUSY_SECONDS, isolation_level=None, check_same_thread=False)
        try:
            self._adopt(db)
            self._wal(db)
            db.execute("PRAGMA foreign_keys = ON")
            db.execute("PRAGMA synchronous = NORMAL")  # with WAL: a power cut may lose the last rows, never the file
        except BaseException:
            db.close()
            raise
        return db

    def _adopt(self, db: sqlite3.Connection) -> None:
        """Check the file is our registry; create the schema in a new (empty) file. Nothing else is written."""
        if self._known(db):
            return
        db.execute("BEGIN IMMEDIATE")  # one process creates it; the others wait, then find it made
        try:
            if not self._known(db):
                for statement in SCHEMA.split(";"):  # not executescript: it would commit first
                    if statement.strip():
                        db.execute(statement)
                db.execute(f"PRAGMA application_id = {APPLICATION_ID}")
                db.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
            db.execute("COMMIT")
        except BaseException:
            if db.in_transaction:
                db.execute("ROLLBACK")
            raise

    def _known(self, db: sqlite3.Connection) -> bool:
        """True for our registry, False for an empty file; refuses anything else."""
        app_id = db.execute("PRAGMA application_id").fetchone()[0]
        version = db.execute("PRAGMA user_version").fetchone()[0]
        if app_id == APPLICATION_ID:
            if version > SCHEMA_VERSION:
                raise self._fail(f"was written by a newer tui-gpt (registry version {version}); upgrade tui-gpt")
            return True
        tables = db.execute("SELECT count(*) FROM sqlite_master").fetchone()[0]
        if app_id or version or tables:
            raise self._fail("is another program's SQLite database, not a tui-gpt run registry")
        return False

    def _wal(self, db: sqlite3.Connection) -> None:
        """Write-ahead logging, so readers never wait for writers; another process switching it may hold a lock."""
        end = time.monotonic() + BUSY_SECONDS
        while True:
            try:
                db.execute("PRAGMA journal_mode = WAL")
                return
            except sqlite3.OperationalError as exc:
                if "locked" not in str(exc) or time.monotonic() > end:
                    raise
                time.sleep(0.05)

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def __enter__(self) -> Registry:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ---- writing ------------------------------------------------------------------
    def _write(self, sql: str, args: tuple) -> int:
        def work() -> int:
            with self._lock:
                return self._db.execute(sql, args).lastrowid or 0

        return self._guard(work)

    def add(self, info: RunInfo, started: float | None = None) -> int:
        """Record a run that starts now, as 'running' in this process; its id."""
        started = time.time() if started is None else started
        return self._write(
            "INSERT INTO runs (started, status, kind, text_digest, info, pid, host) VALUES (?, ?, ?, ?, ?, ?, ?)",
            (started, "running", info.kind, info.text_digest, json.dumps(info.to_dict()), os.getpid(), _host()),
        )

    def add_eval(self, run_id: int, row: EvalRow) -> None:
        self._write("INSERT INTO evals (run, step, row) VALUES (?, ?, ?)", (run_id, row.step, json.dumps(asdict(row))))

    def finish(self, run_id: int, end: RunEnd) -> None:
        ending = json.dumps(asdict(end))
        self._write("UPDATE runs SET status = ?, finish = ? WHERE id = ?", (end.status, ending, run_id))

    def remove(self, ids: list[int]) -> int:
        """Remove these runs and their evaluations (never a checkpoint); how many there were."""
        marks = ",".join("?" * len(ids))

        def work() -> int:
            with self._lock:
                db = self._db
                db.execute("BEGIN IMMEDIATE")
                try:
                    db.execute(f"DELETE FROM evals WHERE run IN ({marks})", ids)
                    n = db.execute(f"DELETE FROM runs WHERE id IN ({marks})", ids).rowcount
                    db.execute("COMMIT")
                except BaseException:
                    db.execute("ROLLBACK")
                    raise
                return n

        return self._guard(work) if ids else 0

    # ---- reading ------------------------------------------------------------------
    def runs(
        self, text_digest: str | None = None, ids: list[int] | None = None, damaged: bool = False
    ) -> list[RunRecord]:
        """The runs, newest first: all of them, those on one text, and/or those with these ids.

        A row the registry cannot wholly read (not JSON, nested too deep, fields of the wrong type) is
        left out, unless `damaged`: then it comes as what could be read, its `damaged` saying why, so
        that `tui-gpt runs` can show it and `runs rm` remove it.
        """
        where: list[str] = []
        args: list[Any] = []
        if text_digest is not None:
            where.append("text_digest = ?")
            args.append(text_digest)
        if ids is not None:
            where.append(f"id IN ({','.join('?' * len(ids))})")
            args.extend(ids)
        sql = "SELECT id, started, status, info, finish, pid, host FROM runs"
        sql += (" WHERE " + " AND ".join(where) if where else "") + " ORDER BY started DESC, id DESC"
        found = self._guard(self._read, sql, args)
        return found if damaged else [r for r in found if not r.damaged]

    def _read(self, sql: str, args: list) -> list[RunRecord]:
        with self._lock:
            db = self._db
            db.execute("BEGIN")  # one snapshot: no run without its evaluations
            try:
                rows = db.execute(sql, args).fetchall()
                found = [r[0] for r in rows]
                evals: dict[int, list[Any]] = {i: [] for i in found}
                for run, row in db.execute(
                    f"SELECT run, row FROM evals WHERE run IN ({','.join('?' * len(found))}) ORDER BY run, step, rowid",
                    found,
                ):
                    evals[run].append(row)
            finally:
                db.execute("COMMIT")
        return [_record(row, evals[row[0]]) for row in rows]


def _host() -> str:
    return socket.gethostname()


MAX_DEPTH = 64  # nesting a run's JSON may have: deeper is damage (or an attack), never a recursion error
_TYPES: dict[str, tuple[type, ...]] = {
    "int": (int,),
    "float": (int, float),
    "str": (str,),
    "dict": (dict,),
    "float | None": (int, float, type(None)),
    "int | None": (int, type(None)),
    "str | None": (str, type(None)),
}


class Damaged(ValueError):
    """Part of a registry row that cannot be read: why, in a few words."""


def _too_deep(value: Any) -> bool:
    """Whether `value` nests lists and dicts more than MAX_DEPTH levels (counted without recursion)."""
    level = [value]
    for _ in range(MAX_DEPTH):
        level = [v for x in level if isinstance(x, dict | list) for v in (x.values() if isinstance(x, dict) else x)]
        if not level:
            return False
    return any(isinstance(x, dict | list) for x in level)


def _parse(cls: type, text: Any) -> Any:
    """A tracking dataclass from its JSON in the registry; `Damaged` says why it cannot be."""
    try:
        value = json.loads(text)
    except (ValueError, TypeError, RecursionError):
        raise Damaged("not JSON" if isinstance(text, str | bytes) else "not text") from None
    if not isinstance(value, dict):
        raise Damaged(f"not a {cls.__name__}")
    if _too_deep(value):
        raise Damaged(f"nested over {MAX_DEPTH} levels")
    kinds = {f.name: _TYPES.get(str(f.type)) for f in fields(cls)}
    for name, v in value.items():
        wanted = kinds.get(name)
        if wanted and (not isinstance(v, wanted) or isinstance(v, bool)):
            raise Damaged(f"its {name} is a {type(v).__name__}")
    try:
        return _from_dict(cls, value)
    except TypeError:  # a field it must have is missing
        raise Damaged(f"not a whole {cls.__name__}") from None


def _record(row: tuple, evals: list[Any]) -> RunRecord:
    """A run from its row, never raising: what cannot be read is left at a blank and named in `damaged`."""
    run_id, started, status, info, finish, pid, host = row
    why: list[str] = []

    def read(what: str, cls: type, text: Any, blank: Any) -> Any:
        try:
            return _parse(cls, text)
        except Damaged as exc:
            why.append(f"{what} {exc}")
            return blank

    run = read("info", RunInfo, info, RunInfo("?", {}, "?", "?", "", ""))
    end = read("end", RunEnd, finish, None) if finish is not None else None
    rows = [read("an evaluation", EvalRow, e, None) for e in evals]
    if not isinstance(started, int | float) or not 0 <= started < 1e11:  # datetime shows years up to 9999
        why.append(f"its start {str(started)[:20]!r} is not a time")
        started = 0.0
    if status not in STATUSES:
        why.append(f"its status {str(status)[:20]!r} is unknown")
        status = "failed"
    pid = pid if isinstance(pid, int) and 0 < pid < 1 << 31 else None  # os.kill takes a C int
    host = host if isinstance(host, str) else ""
    if status == "running" and not _alive(pid, host, started):
        status = "killed"
    damaged = "; ".join(dict.fromkeys(why))
    return RunRecord(run_id, float(started), status, run, [r for r in rows if r is not None], end, pid, host, damaged)


class RegistrySink:
    """A `tracking.Sink` that records a run in the registry: a 'running' row at start, one row per evaluation."""

    def __init__(self, registry: Registry | None = None) -> None:
        self.registry = registry
        self.own = registry is None  # opened here: closed at the end
        self.id: int | None = None

    def start(self, run: RunInfo) -> None:
        if self.registry is None:
            self.registry = Registry()
        self.id = self.registry.add(run)

    def eval(self, row: EvalRow) -> None:
        if self.registry is not None and self.id is not None:
            self.registry.add_eval(self.id, row)

    def finish(self, end: RunEnd) -> None:
        if self.registry is None or self.id is None:
            return
        try:
            self.registry.finish(self.id, end)
        finally:
            if self.own:
                self.registry.close()


# ---- comparing runs ---------------------------------------------------------------
# Settings named as their command-line options ("lr", "n-layer", "steps"); the rest by their field.
_NAMES: dict[str, str] = {
    opt.field: (opt.field if opt.flag_only else opt.flag.removeprefix("--")) for opt in (*OPTIONS, STEPS)
}
# Not what a run is: the text is compared by its digest, a dropout's reason follows from its value,
# and which weights a run keeps, or how often its heads are read, changes nothing it learns.
_IGNORED = ("sources", "resume", "given", "dropout_note", "keep", "head_interval")


def _option_name(field: str) -> str:
    return _NAMES.get(field, field)


def flat_settings(run: RunRecord) -> dict[str, Any]:
    """A run's settings in one flat dict named like the options, with its text and tokenizer."""
    out: dict[str, Any] = {"text": run.info.text_name, "tokenizer": run.info.tokenizer}
    for name, value in run.info.settings.items():
        if name == "train" and isinstance(value, dict):
            out.update({_option_name(k): v for k, v in value.items() if k not in _IGNORED})
        elif name not in _IGNORED:
            out[_option_name(name)] = value
    return out


def show_value(value: Any) -> str:
    """A setting's value, short: 0.001 as 1e-3, None as 'default'."""
    if value is None:
        return "default"
    if isinstance(value, float) and value and (abs(value) < 1e-2 or abs(value) >= 1e5):
        mantissa, exponent = f"{value:.4e}".split("e")
        return f"{mantissa.rstrip('0').rstrip('.')}e{int(exponent)}"
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


def differences(runs: list[RunRecord]) -> dict[str, list]:
    """The settings whose values differ between `runs`: name -> one value per run (in order)."""
    flats = [flat_settings(r) for r in runs]
    names: list[str] = []
    for flat in flats:
        names += [n for n in flat if n not in names]
    out = {}
    for name in names:
        values = [flat.get(name) for flat in flats]
        if len({json.dumps(v, sort_keys=True, default=str) for v in values}) > 1:
            out[name] = values
    # Two texts with one name (an edited file) differ by digest alone: say so.
    if "text" not in out and len({r.info.text_digest for r in runs}) > 1:
        out["text"] = [f"{r.info.text_name} ({r.info.text_digest[:8]})" for r in runs]
    return out


def legend(runs: list[RunRecord]) -> str:
    """What differs between `runs`, in one line: 'lr 1e-3 vs 2e-3 · seed 1 vs 2'."""
    if len(runs) < 2:
        return ""
    parts = []
    for name, values in differences(runs).items():
        shown = list(dict.fromkeys(show_value(v) for v in values))
        parts.append(f"{name} {' vs '.join(shown)}")
    return " · ".join(parts) or "same settings"


def labels(runs: list[RunRecord]) -> list[str]:
    """Each run's own values of the settings that differ between `runs`: 'lr 1e-3 seed 2'."""
    diffs = differences(runs)
    return [" ".join(f"{name} {show_value(values[i])}" for name, values in diffs.items()) for i in range(len(runs))]


def setting_key(run: RunRecord, leave_out: tuple[str, ...] = ()) -> str:
    """The run's text and settings, but those named in `leave_out`, as one comparable string."""
    flat = {k: v for k, v in flat_settings(run).items() if k not in leave_out}
    return json.dumps([flat, run.info.text_digest], sort_keys=True, default=str)


def seed_groups(runs: list[RunRecord]) -> list[list[RunRecord]]:
    """`runs` grouped so that the runs in a group differ only by seed; in order of first appearance."""
    groups: dict[str, list[RunRecord]] = {}
    for run in runs:
        groups.setdefault(setting_key(run, ("seed",)), []).append(run)
    return list(groups.values())
