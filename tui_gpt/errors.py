"""The one error type the user sees: a single line that says what went wrong and what to do."""

from __future__ import annotations

import argparse
import errno
import os
import re
import sys
from pathlib import Path

# What writing gives on a full disk (or a quota, or a file size limit), and on a read-only one.
NO_ROOM = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EFBIG})
WRITE_ERRORS = NO_ROOM | {errno.EROFS}  # reading never gives these


# Control characters as escapes (`\x1b`), the way visible.shown draws them (this floor may not import it).
_ESCAPED = str.maketrans(
    {chr(c): f"\\x{c:02x}" if c < 0x80 else f"\\u{c:04x}" for c in (*range(0x20), *range(0x7F, 0xA0), 0x2028, 0x2029)}
)


class TuiGptError(Exception):
    """A problem with the user's input or files, reported as one line, never a traceback."""


def report(exc: TuiGptError) -> int:
    """Print the one line of `exc` on stderr; returns the exit status for it.

    A message names files, folders and runs, which may hold an escape or a newline: shown escaped.
    """
    print(f"tui-gpt: error: {str(exc).translate(_ESCAPED)}", file=sys.stderr)
    return 2


def error_code(exc: BaseException) -> int | None:
    """The errno of an OSError, or of a safetensors error that names one ('os error 28')."""
    code = getattr(exc, "errno", None)
    if code is None:
        found = re.search(r"code: (\d+)|os error (\d+)", str(exc))
        code = int(found.group(1) or found.group(2)) if found else None
    return code


def reason(exc: BaseException) -> str:
    """An OS or safetensors write error in a few words: 'no space left on device'."""
    if code := error_code(exc):
        text = os.strerror(code)
        return text[:1].lower() + text[1:]
    return str(exc).splitlines()[0][:80] if str(exc) else type(exc).__name__


# Linux's limits: one name in a path (NAME_MAX, in bytes), and a whole path (PATH_MAX, with its NUL).
NAME_MAX = 255
PATH_MAX = 4096
_SHOWN = 60  # characters of a refused path shown in its one line


def shown_path(text: str) -> str:
    """`text` for a one-line message: control characters escaped, and cut to `_SHOWN` characters."""
    safe = text[: _SHOWN * 2].translate(_ESCAPED)
    return safe if len(safe) <= _SHOWN else safe[: _SHOWN - 1] + "…"


def path_problem(text: str | os.PathLike[str]) -> str | None:
    """Why `text` can be no file name here ("no such user", "name too long"...), or None if it can be one."""
    raw = os.fspath(text)
    if not raw:
        return "an empty path"
    if "\0" in raw:
        return "a path cannot hold a NUL character"
    try:
        encoded = os.fsencode(Path(raw).expanduser())
    except RuntimeError:  # "Could not determine home directory."
        return f"no such user, or no home folder: {shown_path(raw.split(os.sep, 1)[0])}"
    except (UnicodeError, ValueError):
        return "a path this system cannot encode"
    if len(encoded) >= PATH_MAX:
        return f"the path is too long ({len(encoded):,} bytes; the most is {PATH_MAX - 1:,})"
    if any(len(part) > NAME_MAX for part in encoded.split(b"/")):
        return f"a name in the path is too long (the most is {NAME_MAX} bytes)"
    return None


def checked_path(text: str | os.PathLike[str], what: str = "") -> Path:
    """`text` as a Path with `~` expanded; a TuiGptError of one line (naming `what`: "--out") if it can be none.

    Every path a person gives (an argument, an environment variable, a dialog's answer) comes through here,
    so that `~nosuchuser`, a NUL byte or a 5,000-character name is a message, never a traceback.
    """
    why = path_problem(text)
    if why:
        label = f"{what} " if what and not what.endswith("=") else what
        raise TuiGptError(f"{label}{shown_path(os.fspath(text))}: {why}")
    return Path(text).expanduser()


def path_arg(text: str) -> str:
    """The argparse type of every path argument: `text` as given, if `checked_path` takes it; else argparse's
    one-line usage error ("argument --out: ~nosuchuser/x: no such user, or no home folder: ~nosuchuser")."""
    try:
        checked_path(text)
    except TuiGptError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    return text


def env_path(name: str) -> Path | None:
    """The path environment variable `name` holds, checked as `checked_path` checks; None if unset or empty."""
    value = os.environ.get(name)
    return checked_path(value, f"{name}=") if value else None


def env_path_or(name: str, home: str) -> Path:
    """`env_path(name)`, or when it is unset `home` (a path under "~", checked too: there may be no home)."""
    return env_path(name) or checked_path(home, f"{name} is unset, and")
