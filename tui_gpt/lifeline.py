"""Processes that end with their parent: Linux's PR_SET_PDEATHSIG, asked for by the child itself.

The kernel sends the chosen signal when the parent ends, whatever ended it (SIGKILL too). Two
caveats, both handled here or by the callers:
- the signal comes when the *thread* that started the child ends, not only the process: a parent
  starts such children from its main thread, or the signal is one that does no harm if early
  (SIGCONT);
- a parent that died before the child asked is never signalled for: the child compares getppid()
  with the parent it expected right after asking, and acts at once when they differ.
Elsewhere (macOS) nothing is asked, and the callers' own checks (a pipe's end, getppid) remain.
"""

from __future__ import annotations

import ctypes
import os
import sys

PARENT_ENV = "TUI_GPT_PARENT"  # a parent's pid, set by a parent whose tui-gpt children must end with it
PR_SET_PDEATHSIG = 1  # from <sys/prctl.h>


def on_parent_death(sig: int, parent: int | None = None) -> bool:
    """Have the kernel send this process `sig` when its parent ends.

    `parent`: the pid of the expected parent (None: whichever it is now). Returns False when that
    parent is already gone, so that no signal will ever come: the caller acts now.
    """
    expected = os.getppid() if parent is None else parent
    if sys.platform.startswith("linux"):
        try:
            libc = ctypes.CDLL(None, use_errno=True)
            libc.prctl(PR_SET_PDEATHSIG, int(sig), 0, 0, 0)
        except (OSError, AttributeError):
            pass
    return os.getppid() == expected


def child_env(env: dict[str, str] | None = None) -> dict[str, str]:
    """The environment for a tui-gpt child of this process that must end with it (see `adopted`)."""
    return {**(os.environ if env is None else env), PARENT_ENV: str(os.getpid())}


def adopted(sig: int) -> bool:
    """In a tui-gpt started with `child_env`: ask for `sig` when that parent ends. False: it has already.

    The variable is removed, so that this process's own children do not take it for theirs.
    """
    named = os.environ.pop(PARENT_ENV, "")
    if not named.isdigit():
        return True
    return on_parent_death(sig, int(named))
