"""Where a checkpoint may be written: never over anything that tui-gpt did not write.

Torch-free, so the app and the CLI can refuse a bad `--out` before anything starts.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from tui_gpt.errors import TuiGptError

FORMAT = "tui-gpt-checkpoint/1"
FILES = ("model.safetensors", "optimizer.safetensors", "config.json", "tokenizer.json", "trainer.json", "history.json")
LOCK = ".lock"
OURS = frozenset((*FILES, LOCK))
AUTOSAVE_SECONDS = 300  # train and the app save this often; 0 turns it off


def is_checkpoint_dir(path: Path) -> bool:
    """True if `path` is a folder holding only checkpoint files, with our config.json."""
    try:
        names = {p.name for p in path.iterdir()}
    except OSError:
        return False
    if not names <= OURS or "config.json" not in names:
        return False
    try:
        with open(path / "config.json", "rb") as f:
            head = f.read(1 << 20)
        return json.loads(head).get("format") == FORMAT
    except (OSError, ValueError, AttributeError):
        return False


def check_out(out: Path) -> Path:
    """The resolved folder to save into; a one-line error if saving there could destroy anything."""
    out = Path(out).expanduser()
    if out.is_symlink() or (out.exists() and not out.is_dir()):
        raise TuiGptError(f"{out}: exists and is not a folder; pass --out a new folder or a tui-gpt checkpoint")
    out = out.resolve()
    if out.is_dir():
        try:
            empty = not any(out.iterdir())
        except OSError as exc:
            raise TuiGptError(f"{out}: cannot be read ({exc.strerror}); pass --out another folder") from None
        if not empty and not is_checkpoint_dir(out):
            raise TuiGptError(
                f"{out}: holds files that are not a tui-gpt checkpoint; tui-gpt saves only into a new folder, "
                "an empty one or one of its own checkpoints"
            )
    old = aside(out)
    if old.exists() and not is_checkpoint_dir(old):
        raise TuiGptError(f"{old}: in the way and not a tui-gpt checkpoint; move it, or pass --out another folder")
    return out


def aside(out: Path) -> Path:
    """Where the previous checkpoint waits while a save moves the new one in."""
    return out.with_name(f".{out.name}.old")


def temp_prefix(out: Path) -> str:
    return f".{out.name}.tmp-"


def remove_orphans(out: Path) -> None:
    """Delete temp folders that killed saves into `out` left behind, if they hold only our files."""
    for tmp in out.parent.glob(temp_prefix(out) + "*"):
        try:
            if tmp.is_dir() and not tmp.is_symlink() and {p.name for p in tmp.iterdir()} <= OURS:
                shutil.rmtree(tmp)
        except OSError:
            pass  # someone else's, or gone already: leave it
