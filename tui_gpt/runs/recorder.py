"""Recording a run: its sinks (the run registry, `--log`'s writers), fed from the trainer's events.

`train`, `bench` and the app's trainer process all record through `Recorder`: one place that turns
a run into a `RunInfo`, its evaluation steps into `EvalRow`s and its end into a `RunEnd`.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tui_gpt.errors import TuiGptError, path_arg
from tui_gpt.runs.logsinks import SINKS
from tui_gpt.runs.tracking import EvalRow, RunEnd, RunInfo, Sink
from tui_gpt.settings import RunSpec, reproduce_command
from tui_gpt.visible import shown

if TYPE_CHECKING:
    from tui_gpt.engine.session import LoadedRun
    from tui_gpt.engine.trainer import TrainEvent

LOG_KINDS = SINKS  # what --log can name
LOG_DIR = "tui-gpt-logs"  # --log's default folder, in the current one: every run in a subfolder of it
NO_RECORD = "TUI_GPT_NO_RECORD"  # set to 1: record no run in the registry (as --no-record)
# The model's own settings, as a resumed or pretrained run has them (its spec holds only what was typed).
MODEL_FIELDS = ("vocab_size", "n_layer", "n_head", "n_embd", "block_size", "dropout", "causal")


def log_kinds(value: str) -> tuple[str, ...]:
    """--log's value: a comma list of LOG_KINDS (argparse's type)."""
    kinds = tuple(dict.fromkeys(k.strip() for k in value.split(",") if k.strip()))
    wrong = [k for k in kinds if k not in LOG_KINDS]
    if wrong or not kinds:
        raise argparse.ArgumentTypeError(f"{value!r}: choose from {', '.join(LOG_KINDS)} (a comma list)")
    return kinds


def add_options(parser: argparse.ArgumentParser) -> None:
    """--no-record, --log and --log-dir: where a front end reports its runs."""
    group = parser.add_argument_group("recording (tui-gpt runs lists what is recorded)")
    group.add_argument(
        "--no-record", action="store_true", help=f"do not record this run in the run registry (or set {NO_RECORD}=1)"
    )
    group.add_argument(
        "--log", type=log_kinds, default=(), metavar="KINDS", help=f"also log to {' and/or '.join(LOG_KINDS)}"
    )
    group.add_argument(
        "--log-dir", type=path_arg, default=LOG_DIR, metavar="DIR", help=f"where --log writes (default ./{LOG_DIR})"
    )


@dataclass(frozen=True)
class Recording:
    """Where a front end reports its runs; picklable, for the app's trainer process."""

    record: bool = True  # in the run registry
    log: tuple[str, ...] = ()  # LOG_KINDS
    log_dir: str = LOG_DIR
    sweep: str = ""  # the sweep a `train` runs for: its runs are of kind "sweep"

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> Recording:
        record = not getattr(args, "no_record", False) and os.environ.get(NO_RECORD, "") in ("", "0")
        log, log_dir = tuple(getattr(args, "log", ()) or ()), getattr(args, "log_dir", LOG_DIR) or LOG_DIR
        return cls(record, log, log_dir, getattr(args, "sweep", "") or "")

    def check(self) -> None:
        """Refuse in one line, before any work, a registry that cannot be written (and make it, if new)."""
        if self.record:
            from tui_gpt.runs.registry import Registry

            Registry().close()

    def sinks(self, info: RunInfo) -> list[Sink]:
        """The places a run is reported to, not yet started."""
        from tui_gpt.runs.registry import RegistrySink

        out: list[Sink] = [RegistrySink()] if self.record else []
        if self.log:
            try:
                from tui_gpt.runs.logsinks import make_sink
            except ModuleNotFoundError as exc:
                if exc.name != "tui_gpt.runs.logsinks":
                    raise
                raise TuiGptError("--log: this tui-gpt has no log writers (tui_gpt/runs/logsinks.py)") from None
            out += [make_sink(kind, Path(self.log_dir), info) for kind in self.log]
        return out


def settings_of(spec: RunSpec) -> dict:
    """A spec's settings as the registry keeps them: the spec without `given`, and never the thread count."""
    d = spec.to_dict()
    d.pop("given", None)
    d["train"] = spec.train.to_dict()
    return d


def run_info(kind: str, run: LoadedRun, recording: Recording, checkpoint: str | Path | None = None) -> RunInfo:
    """The `RunInfo` of an opened run."""
    spec = run.spec
    if spec.resume or spec.model:  # the checkpoint's or the pretrained model's settings, not the typed ones
        config = run.trainer.model.config
        model = {name: getattr(config, name) for name in MODEL_FIELDS}
        spec = replace(spec, **model, tokenizer=run.tokenizer.kind, train=replace(run.trainer.config))
    return RunInfo(
        kind="sweep" if recording.sweep else kind,
        settings=settings_of(spec),
        tokenizer=run.tokenizer.kind,
        text_name=run.corpus.name,
        text_digest=run.corpus.digest,
        reproduce=reproduce_command(spec),
        checkpoint=absolute(checkpoint),
        sweep=recording.sweep,
        run_id=run.run_id,
    )


def absolute(folder: str | Path | None) -> str | None:
    """A checkpoint folder as the registry keeps it: absolute and resolved, so that it names one folder
    whatever the current one is when it is read (`runs rm` refuses a relative one)."""
    return str(Path(folder).expanduser().resolve()) if folder else None


def _warn(message: str) -> None:
    print(f"tui-gpt: {shown(message)}", file=sys.stderr)  # it names folders: control characters shown


class Recorder:
    """Reports one run to its sinks. A sink that fails after it started warns once and is dropped."""

    def __init__(self, sinks: list[Sink], run: LoadedRun | None, warn: Callable[[str], None] = _warn) -> None:
        self.sinks = sinks
        self.trainer = run.trainer if run is not None else None
        self.warn = warn
        self.t0 = time.monotonic()
        self.first = (self.trainer.step, self.trainer.elapsed) if self.trainer else (0, 0.0)
        self.finished = not sinks
        self.heads: tuple[int, dict[str, Any]] | None = None  # the latest head reading: (step, TrainEvent.heads)

    @classmethod
    def start(
        cls,
        kind: str,
        run: LoadedRun,
        recording: Recording,
        checkpoint: str | Path | None = None,
        warn: Callable[[str], None] = _warn,
    ) -> Recorder:
        """Start recording `run`; a sink that refuses (a corrupt registry, a missing package) is one line."""
        info = run_info(kind, run, recording, checkpoint)
        started: list[Sink] = []
        recorder = cls(started, run, warn)
        recorder.finished = False
        try:
            for sink in recording.sinks(info):
                sink.start(info)
                started.append(sink)
        except BaseException:
            recorder.finish("failed")  # the ones that started: no row stays 'running'
            raise
        recorder.finished = not started
        return recorder

    @classmethod
    def none(cls) -> Recorder:
        """A recorder that records nothing (rank > 0 under torchrun, --no-record with no --log)."""
        return cls([], None)

    def _each(self, method: str, arg: object) -> None:
        for sink in list(self.sinks):
            try:
                getattr(sink, method)(arg)
            except Exception as exc:  # never stops the run: say so once, and go on without it
                self.sinks.remove(sink)
                why = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
                self.warn(f"stopped recording to {type(sink).__name__}: {why}")

    def event(self, ev: TrainEvent) -> None:
        """Report `ev` if it is an evaluation, with the latest head reading (readings come every --head-interval)."""
        if ev.heads is not None:
            self.heads = (ev.step, ev.heads)
        if ev.val_loss is None or self.trainer is None or not self.sinks:
            return
        row = EvalRow(
            step=ev.step,
            tokens=ev.step * self.trainer.tokens_per_step,
            wall_s=time.monotonic() - self.t0,
            train=ev.eval_train_loss if ev.eval_train_loss is not None else float("nan"),
            val=ev.val_loss,
            val_bpb=ev.val_bpb,
            lr=ev.lr,
            tokens_per_s=ev.tokens_per_s,
        )
        if self.heads is not None:
            row.add_heads(*self.heads)
        self._each("eval", row)

    def watch(self, events: Iterable[TrainEvent]) -> Iterator[TrainEvent]:
        """`events`, each reported on its way through."""
        for ev in events:
            self.event(ev)
            yield ev

    def finish(self, status: str, checkpoint: str | Path | None = None, **extra: object) -> None:
        """Report the end (once): 'done', 'stopped' or 'failed'."""
        if self.finished:
            return
        self.finished = True
        step, elapsed = (self.trainer.step, self.trainer.elapsed) if self.trainer else (0, 0.0)
        trained = (step - self.first[0]) * (self.trainer.tokens_per_step if self.trainer else 0)
        seconds = elapsed - self.first[1]
        rate = trained / seconds if seconds > 0 else 0.0
        wall = time.monotonic() - self.t0
        if self.trainer is not None and (best := self.trainer.history.best_val()) is not None:
            extra = {"best_val_step": best[0], "best_val": best[1], **extra}  # where the val loss was lowest
        self._each("finish", RunEnd(status, step, wall, rate, absolute(checkpoint), dict(extra)))

    @staticmethod
    def status_of(code: int) -> str:
        """A front end's exit status as a run's end: 0 done, 128 + a signal stopped, else failed."""
        return "done" if code == 0 else "stopped" if code >= 128 else "failed"

    def __enter__(self) -> Recorder:
        return self

    def __exit__(self, kind: type | None, exc: BaseException | None, tb: object) -> None:
        if kind is None:
            self.finish("done")
        else:
            self.finish("stopped" if issubclass(kind, KeyboardInterrupt) else "failed")
