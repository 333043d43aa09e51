"""`--log tensorboard` and `--log trackio`: a run's evaluations, written where those tools read them.

Each writer is an optional extra, imported only when asked for. A sink refuses in one line at
`make_sink` or `start` (a missing package, a folder it cannot write); after `start`, a failing
write warns once and drops the sink: a log never stops training. Nothing here goes online.
"""

from __future__ import annotations

import contextlib
import io
import os
import re
import secrets
import socket
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, BinaryIO

from tui_gpt.errors import TuiGptError, checked_path, reason
from tui_gpt.runs.tracking import EvalRow, RunEnd, RunInfo, Sink
from tui_gpt.visible import shown

SINKS = ("tensorboard", "trackio")  # what --log can name
TRACKIO_PROJECT = "tui-gpt"  # one trackio project for every run; `group` keeps runs of one text together
# Where trackio would send a run instead of its local store: tui-gpt never goes online.
TRACKIO_REMOTE = ("TRACKIO_SPACE_ID", "TRACKIO_SERVER_URL")
# Metrics logged at each evaluation, named alike in both tools.
METRICS: dict[str, Callable[[EvalRow], float | None]] = {
    "loss/train": lambda r: r.train,
    "loss/val": lambda r: r.val,
    "bpb/val": lambda r: r.val_bpb,
    "lr": lambda r: r.lr,
    "tokens_per_s": lambda r: r.tokens_per_s,
    "tokens": lambda r: r.tokens,
}


def make_sink(name: str, logdir: Path, info: RunInfo | None = None) -> Sink:
    """The sink `--log NAME` asks for; TensorBoard writes one folder per run under `logdir`.

    trackio keeps its own store ($TRACKIO_DIR, else $HF_HOME/trackio), where `trackio show` finds it.
    Given the run's `info`, the sink names the run at once (its `where` is whole before `start`).
    """
    if name == "tensorboard":
        return TensorBoardSink(logdir, info)
    if name == "trackio":
        return TrackioSink(info)
    raise TuiGptError(f"--log {name}: not a log this tui-gpt writes; choose from {', '.join(SINKS)}")


def _need(extra: str, module: str) -> Any:
    """Import an optional extra's module, or say in one line how to install it."""
    try:
        return __import__(module, fromlist=["_"])
    except ImportError:
        raise TuiGptError(f"--log {extra} needs the {extra} package: pip install 'tui-gpt[{extra}]'") from None


_last: list[tuple[RunInfo, str]] = []  # the run named last, and its name


def run_name(info: RunInfo) -> str:
    """A folder-safe, readable, unique name for a run: its label, when it started, and a random tail.

    Every sink of one run (one RunInfo) gets the same name, so the run is called alike in every tool.
    """
    if _last and _last[0][0] is info:
        return _last[0][1]
    label = info.name or f"{info.text_name}-{info.tokenizer}-{info.kind}"
    # Any run of other characters, "-" among them, becomes one "-": "fables (bundled)-char" -> "fables-bundled-char".
    slug = re.sub(r"[^A-Za-z0-9._=]+", "-", label).strip("-.")[:60] or "run"
    name = f"{slug}-{time.strftime('%Y%m%d-%H%M%S')}-{secrets.token_hex(2)}"
    _last[:] = [(info, name)]
    return name


def flat_settings(info: RunInfo) -> dict[str, float | int | str | bool]:
    """The run's settings as one level of `name: value` (train.lr, ...), plus what it trained on.

    Both tools take only plain values: lists and anything else become text, unset values are left out.
    """
    out: dict[str, float | int | str | bool] = {}

    def walk(prefix: str, d: dict) -> None:
        for key, value in d.items():
            if isinstance(value, dict):
                walk(f"{prefix}{key}.", value)
            elif isinstance(value, list | tuple):
                out[prefix + key] = ", ".join(map(str, value))
            elif value is not None:
                out[prefix + key] = value if isinstance(value, float | int | str | bool) else str(value)

    walk("", info.settings)
    walk("", {"tokenizer": info.tokenizer, "text": info.text_name, "text_digest": info.text_digest})
    return out


def _warn(message: str) -> None:
    with contextlib.suppress(OSError):  # no terminal left to warn on: the run goes on all the same
        print(f"tui-gpt: warning: {shown(message)}", file=sys.stderr)  # it names folders: shown escaped


class _BestEffort:
    """One run's log in one tool: named once (from make_sink's `info`, else at `start`), and best effort:
    after `start`, the first failing write warns once and drops the log; later calls do nothing."""

    label = ""
    dropped = False
    name = ""  # the run's, in both tools: run_name(info)

    def _name(self, info: RunInfo | None) -> None:
        if info is not None and not self.name:
            self.name = run_name(info)

    def _attempt(self, write: Callable[[], None]) -> None:
        if self.dropped:
            return
        try:
            write()
        except Exception as exc:  # whatever a log does wrong, training must go on
            self.dropped = True
            _warn(f"--log {self.label}: {reason(exc)}; no longer logging this run there")
            with contextlib.suppress(Exception):
                self._close()

    def _close(self) -> None:
        """Let go of files and threads after a failure."""


# ---- TensorBoard --------------------------------------------------------------------------------


class _EventFile:
    """A TensorBoard event file written in the caller's thread, so a failed write raises here.

    (torch's SummaryWriter writes from a thread of its own, which prints a traceback when the disk fills.)
    """

    def __init__(self, folder: Path) -> None:
        from tensorboard.compat.proto.event_pb2 import Event
        from tensorboard.summary.writer.record_writer import RecordWriter

        self.Event = Event
        # TensorBoard reads files whose name holds "tfevents"; this is the name its own writers give.
        host = re.sub(r"[^A-Za-z0-9.-]", "-", socket.gethostname())
        name = f"events.out.tfevents.{int(time.time()):010d}.{host}.{os.getpid()}"
        self.file: BinaryIO = open(folder / name, "xb")  # noqa: SIM115 (closed by close())
        self.records = RecordWriter(self.file)
        self.write(Event(wall_time=time.time(), file_version="brain.Event:2"))

    def write(self, event: Any) -> None:
        self.records.write(event.SerializeToString())
        self.file.flush()  # evaluations are rare: each one is on disk before training goes on

    def summary(self, summary: Any, step: int, wall_time: float) -> None:
        self.write(self.Event(wall_time=wall_time, step=step, summary=summary))

    def close(self) -> None:
        self.file.close()


class TensorBoardSink(_BestEffort):
    """Scalars against the step, the settings as text and hparams, in `logdir/<run name>/`."""

    label = "tensorboard"

    def __init__(self, logdir: Path, info: RunInfo | None = None) -> None:
        self.logdir = checked_path(logdir, "--log-dir")
        self._name(info)
        self.summaries = _need("tensorboard", "torch.utils.tensorboard.summary")  # checks tensorboard's version
        self.events: _EventFile | None = None
        self.t0 = 0.0

    @property
    def folder(self) -> Path:
        """The run's own folder: TensorBoard shows each folder under `logdir` as a run."""
        return self.logdir / self.name

    @property
    def where(self) -> str:
        """One line for the front end: where the run's events are and how to see them."""
        return f"TensorBoard events in {self.folder}; see them with: tensorboard --logdir {self.logdir}"

    def start(self, run: RunInfo) -> None:
        self.t0 = time.time()
        self._name(run)
        try:
            self.folder.mkdir(parents=True)
            self.events = _EventFile(self.folder)
            self._header(run)
        except OSError as exc:
            self._close()
            raise TuiGptError(f"--log tensorboard: cannot write to {self.folder} ({reason(exc)})") from None

    def _header(self, run: RunInfo) -> None:
        assert self.events is not None
        flat = flat_settings(run)
        table = "\n".join(f"| {k} | {str(v).replace('|', '&#124;')} |" for k, v in flat.items())
        notes = f"**{run.kind}** run\n\n| setting | value |\n|---|---|\n{table}\n\n    {run.reproduce}"
        self.events.summary(self.summaries.text("settings", notes), 0, self.t0)
        # hparams: the settings against the final val loss and bpb, in TensorBoard's HPARAMS tab.
        for summary in self.summaries.hparams(flat, {"loss/val": 0.0, "bpb/val": 0.0}):
            self.events.summary(summary, 0, self.t0)

    def eval(self, row: EvalRow) -> None:
        def write() -> None:
            assert self.events is not None
            for tag, get in METRICS.items():
                if (value := get(row)) is not None:
                    self.events.summary(self.summaries.scalar(tag, value), row.step, self.t0 + row.wall_s)

        self._attempt(write)

    def finish(self, end: RunEnd) -> None:
        def write() -> None:
            assert self.events is not None
            note = f"{end.status} at step {end.step} after {end.wall_s:.1f} s, {end.tokens_per_s:,.0f} tokens/s"
            note += f"; saved in {end.checkpoint}" if end.checkpoint else ""
            self.events.summary(self.summaries.text("end", note), end.step, self.t0 + end.wall_s)
            self._close()

        self._attempt(write)

    def _close(self) -> None:
        if self.events is not None:
            events, self.events = self.events, None
            events.close()


# ---- trackio ------------------------------------------------------------------------------------


@contextlib.contextmanager
def _offline_and_quiet() -> Iterator[None]:
    """Keep trackio's calls off the network and its chatter off stdout.

    trackio.init asks the Hub who the user is (whoami) when a token is saved: the Hub's offline
    switch answers that without a connection. Its "* Trackio ..." lines would land in `train`'s output.
    """
    import huggingface_hub.constants as hub

    before, hub.HF_HUB_OFFLINE = hub.HF_HUB_OFFLINE, True
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            yield
    finally:
        hub.HF_HUB_OFFLINE = before


class TrackioSink(_BestEffort):
    """One trackio run in the local store, project `tui-gpt`, grouped by text, settings as its config."""

    label = "trackio"

    def __init__(self, info: RunInfo | None = None) -> None:
        if remote := [v for v in TRACKIO_REMOTE if os.environ.get(v)]:
            raise TuiGptError(f"--log trackio logs on this machine only, but {remote[0]} is set: unset it")
        self.trackio = _need("trackio", "trackio")
        self.run: Any = None
        self._name(info)

    @property
    def where(self) -> str:
        """One line for the front end: where the run is and how to see it."""
        store = self.trackio.utils.TRACKIO_DIR
        return f"trackio run {self.name} in {store}; see it with: trackio show --project {TRACKIO_PROJECT}"

    def start(self, run: RunInfo) -> None:
        config = {**flat_settings(run), "kind": run.kind, "reproduce": run.reproduce}
        self._name(run)
        try:
            with _offline_and_quiet():
                self.run = self.trackio.init(
                    project=TRACKIO_PROJECT,
                    name=self.name,
                    group=run.text_name,
                    config=config,
                    space_id=None,
                    server_url=None,
                    embed=False,
                    auto_log_cpu=False,
                    auto_log_gpu=False,
                )
        except Exception as exc:  # trackio raises ValueError, OSError, sqlite3 errors: all one line here
            raise TuiGptError(f"--log trackio: could not start a run ({reason(exc)})") from None

    def eval(self, row: EvalRow) -> None:
        metrics = {tag: value for tag, get in METRICS.items() if (value := get(row)) is not None}
        self._attempt(lambda: self.run.log(metrics, step=row.step))

    def finish(self, end: RunEnd) -> None:
        self._attempt(self._close)  # trackio stamps every row with its time: the end adds nothing to say

    def _close(self) -> None:
        if self.run is not None:
            run, self.run = self.run, None
            with _offline_and_quiet():
                run.finish()  # waits for trackio's writer thread to empty its queue
            if self.trackio.context_vars.current_run.get() is run:
                self.trackio.context_vars.current_run.set(None)  # or trackio finishes it again at exit
