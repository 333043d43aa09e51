"""Start the app from the command line: the trainer process first, then the UI."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from tui_gpt.savedir import check_out
from tui_gpt.session import preflight
from tui_gpt.settings import RunSpec


def run_app(args: argparse.Namespace) -> int:
    spec = RunSpec.from_args(args)
    out = args.out or spec.resume or "tui-gpt-run"
    check_out(Path(out))  # never save over a folder or file that is not ours
    preflight(spec)  # bad text or a bad checkpoint is a one-line error, before the screen opens
    if not sys.stdout.isatty():
        print("tui-gpt: error: the app needs a terminal; use 'tui-gpt train' for scripts", file=sys.stderr)
        return 2
    from tui_gpt.app.app import GPTApp

    app = GPTApp(spec, out=out)
    app.run()
    if app.return_code:  # the app crashed: Textual has printed the traceback
        return app.return_code
    trainer_json = Path(out) / "trainer.json"
    if app.saves_on_quit and trainer_json.exists():
        step = json.loads(trainer_json.read_text()).get("step", 0)
        print(f"tui-gpt: saved step {step} to {out}; continue with: tui-gpt --resume {out}")
    else:
        print("tui-gpt: nothing new to save")
    return 0
