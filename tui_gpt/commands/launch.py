"""Start the app from the command line: the trainer process first, then the UI."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from tui_gpt.engine.savedir import BEST, best_val, check_out
from tui_gpt.engine.session import preflight
from tui_gpt.runs.recorder import Recording
from tui_gpt.settings import RunSpec
from tui_gpt.visible import shown


def run_app(args: argparse.Namespace) -> int:
    spec = RunSpec.from_args(args, app=True)
    out = args.out or spec.resume or "tui-gpt-run"
    check_out(Path(out))  # never save over a folder or file that is not ours
    preflight(spec)  # bad text or a bad checkpoint is a one-line error, before the screen opens
    recording = Recording.from_args(args)
    recording.check()  # and so is a run registry that cannot be written
    served = "TEXTUAL_DRIVER" in os.environ  # textual-serve's web driver talks over a pipe, not a terminal
    if not served and not sys.stdout.isatty():
        print("tui-gpt: error: the app needs a terminal; use 'tui-gpt train' for scripts", file=sys.stderr)
        return 2
    from tui_gpt.app.gpt_app import make_app

    app = make_app(spec, out=out, autosave=args.autosave, recording=recording)
    app.run()
    if app.return_code:  # the app crashed (a bug): Textual has printed the traceback; the run was saved first
        saved = getattr(app, "final_save", None)
        kept = f"saved step {saved.step} to {out}; continue with: tui-gpt --resume {out}" if saved else "nothing saved"
        print(f"tui-gpt: the app stopped on an error (a bug, shown above); {kept}", file=sys.stderr)
        return app.return_code
    # Served, stdout is textual-serve's packet pipe; it shows our stderr in its own log.
    stream = sys.stderr if served else sys.stdout
    try:  # after a hang-up there may be no terminal left to print on
        if app.final_save is not None:
            saved = app.final_save.path  # a reset may have moved the run to a new folder
            print(
                shown(f"tui-gpt: saved step {app.final_save.step} to {saved}; continue with: tui-gpt --resume {saved}"),
                file=stream,
            )
        else:
            print("tui-gpt: nothing new to save", file=stream)
        if note := best_note(Path(out)):
            print(note, file=stream)
    except OSError:
        pass
    signalled = app.state.signalled
    return 128 + signalled if signalled else 0


def best_note(out: Path) -> str | None:
    """The quit note's line about --keep best's checkpoint in `out`, if the run has one."""
    best = out / BEST
    if not (best / "config.json").is_file():
        return None
    at = best_val(best)
    which = f"best val {at[1]:.4f} at step {at[0]}" if at else "best val loss"
    return f"tui-gpt: the weights of the {which} are in {best}; probe them with: tui-gpt complete {best} PREFIX"
