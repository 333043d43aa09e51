"""Serve the app to web browsers through textual-serve (the optional `serve` extra).

Every browser tab that opens the page starts its own tui-gpt process on this machine, with
the app's options given to `tui-gpt serve`. It binds to localhost unless told otherwise:
whoever can reach the port can train models and save checkpoints here.
"""

from __future__ import annotations

import shlex
import sys
from collections.abc import Sequence

from tui_gpt.errors import TuiGptError

LOCAL = ("127.0.0.1", "localhost", "::1")
INSTALL = "tui-gpt serve needs textual-serve: pip install 'tui-gpt[serve]' (or: pip install textual-serve)"


def app_command(app_argv: Sequence[str]) -> str:
    """The shell command textual-serve runs for each browser session."""
    return shlex.join([sys.executable, "-m", "tui_gpt", *app_argv])


def serve(host: str, port: int, app_argv: Sequence[str]) -> int:
    """Serve the app on http://host:port until interrupted."""
    try:
        from textual_serve.server import Server
    except ImportError:
        raise TuiGptError(INSTALL) from None
    if not 0 < port < 65536:
        raise TuiGptError(f"--port {port}: choose a port from 1 to 65535")
    if host not in LOCAL:
        print(
            f"tui-gpt: warning: serving on {host}: anyone who can reach port {port} can run tui-gpt here "
            "(train, read the text you name, write checkpoints); there is no login",
            file=sys.stderr,
        )
    Server(app_command(app_argv), host=host, port=port, title="tui-gpt").serve()
    return 0
