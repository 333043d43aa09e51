"""Serve the app to web browsers through textual-serve (the optional `serve` extra).

Every browser tab that opens the page starts its own tui-gpt process on this machine, with
the app's options given to `tui-gpt serve`. Only the tab opened with the URL printed at start
can drive it: that URL carries a secret made for this launch, and the websocket must come from
the page's own origin. Without the secret and the origin, any web page the user visits could
open a websocket to the port and read their files through the app.

Each tab is a whole training run: the app, its trainer, the trainer's watchdog and
multiprocessing's resource tracker, four processes and a copy of the model in two of them. So
at most `--max-sessions` run at once; one more is refused with 503 before any process starts.
Each tab saves into a folder of its own, made new for it next to `--out` (`OUT-1`, `OUT-2`...,
numbered on from any already there): tabs never share a lock or overwrite a run saved earlier.
"""

from __future__ import annotations

import asyncio
import hmac
import ipaddress
import json
import logging
import os
import re
import secrets
import shlex
import sys
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tui_gpt.engine.savedir import aside, discard_unsaved
from tui_gpt.errors import TuiGptError
from tui_gpt.settings import screen_size
from tui_gpt.visible import shown

if TYPE_CHECKING:
    from aiohttp import web
    from textual_serve.app_service import AppService
    from textual_serve.server import Server

LOCAL = ("127.0.0.1", "localhost", "::1")
# A host name: dot-separated labels of letters, digits and inner hyphens (RFC 1123), 253 characters at most.
_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
HOST_NAME = re.compile(rf"(?=.{{1,253}}$)(?:{_LABEL}\.)*{_LABEL}\.?")
PUBLIC_HELP = (
    "with --host: bind an address other than this machine's loopback; anyone who can reach the port "
    "and learns the URL's token can then run tui-gpt here"
)
INSTALL = "tui-gpt serve needs textual-serve: pip install 'tui-gpt[serve]' (or: pip install textual-serve)"
REFUSED = "tui-gpt serve: open the URL it printed at start, with its token, in your own browser\n"
# Sessions at once by default: each is a training run (two processes with the model, trainers
# that each use every core), and one person rarely watches more than a few.
MAX_SESSIONS = 3

TOKEN_IN_URL = re.compile(r"token=[^&\s\"]*")

Handler = Callable[["web.Request"], Awaitable["web.StreamResponse"]]


def full(max_sessions: int) -> str:
    """The one line a tab beyond the cap gets."""
    return (
        f"tui-gpt serve: {max_sessions} session{'s' * (max_sessions != 1)} already running, as many as "
        "--max-sessions allows; close a tab (its run saves, then ends) and reload\n"
    )


def app_command(app_argv: Sequence[str], out: Path | None = None) -> str:
    """The shell command textual-serve runs for a browser session, saving into `out`.

    textual-serve runs it through `sh -c`; `exec` has the shell become the app rather than wait
    for it, one process fewer per session. `out` goes last among the options, where argparse lets
    it win over any `--out` given (also spelt `--out=X` or `--ou X`), and before a `--`, after which
    it would be read as text.
    """
    argv = list(app_argv)
    if out is not None:
        at = argv.index("--") if "--" in argv else len(argv)
        argv[at:at] = ["--out", str(out)]
    return "exec " + shlex.join([sys.executable, "-m", "tui_gpt", *argv])


def session_folder(base: Path) -> Path:
    """Make and return a new folder for one session's run: `base` with `-N` added, past any N there.

    Numbers go on from the highest already next to it, so folders follow the order the tabs were
    opened across launches, and mkdir's refusal of an existing name means no earlier run (of this
    server, an earlier one or another one) is ever saved over.
    """
    parent, name = base.parent, base.name
    numbered = re.compile(re.escape(name) + r"-(\d{1,9})")
    try:
        parent.mkdir(parents=True, exist_ok=True)
        taken = [int(m.group(1)) for p in parent.iterdir() if (m := numbered.fullmatch(p.name))]
        n = max(taken, default=0)
        for _ in range(1000):
            n += 1
            folder = parent / f"{name}-{n}"
            if aside(folder).exists():  # a save's leftover under that name: leave it alone
                continue
            try:
                folder.mkdir()
            except FileExistsError:
                continue
            return folder
    except OSError as exc:
        raise TuiGptError(f"{parent}: cannot make a folder for the session's run ({exc.strerror})") from None
    raise TuiGptError(f"{parent}: no free name for the session's run after {name}-{n}")


def check_host(host: str, public: bool) -> None:
    """Refuse a --host that is not an address or a name, and one beyond loopback unless `public` (--public).

    An empty host would have the server bind every interface; a name other than localhost may
    resolve to any of them.
    """
    shown = repr(host) if not host or not host.isprintable() or " " in host else host
    try:
        address: ipaddress.IPv4Address | ipaddress.IPv6Address | None = ipaddress.ip_address(host)
    except ValueError:
        address = None
        if not HOST_NAME.fullmatch(host):
            raise TuiGptError(
                f"--host {shown[:60]}: not an address or a host name; 127.0.0.1 serves this machine only, "
                "--host 0.0.0.0 --public every interface"
            ) from None
    loopback = address.is_loopback if address is not None else host.rstrip(".").lower() == "localhost"
    if not loopback and not public:
        raise TuiGptError(
            f"--host {host}: serves beyond this machine, where anyone who can reach the port and learns the "
            "token can run tui-gpt here; add --public if that is meant"
        )


def page_url(host: str, port: int) -> str:
    """The URL printed for `host`: an IPv6 address goes in brackets ("http://::1:8000" is no URL)."""
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


def cookie_name(port: int) -> str:
    """The token's cookie; browsers share cookies across ports, so two servers need two names."""
    return f"tui-gpt-token-{port}"


def hide_token(record: logging.LogRecord) -> bool:
    """Blank the token in an access-log line: the terminal may be shared, or pasted in a bug report."""
    record.msg, record.args = TOKEN_IN_URL.sub("token=…", record.getMessage()), None
    return True


def _has_token(request: web.Request, cookie: str, token: str) -> bool:
    """The request carries this launch's token, in its query or its cookie."""
    given = request.query.get("token") or request.cookies.get(cookie) or ""
    return hmac.compare_digest(given.encode(), token.encode())


def _same_origin(request: web.Request, public_url: str) -> bool:
    """The request comes from the server's own page (a websocket must say so; a page load may not)."""
    origin = request.headers.get("Origin")
    if origin is None:  # browsers send one with every websocket; a page load may have none
        return request.headers.get("Upgrade", "").lower() != "websocket" and request.path != "/ws"
    page = f"{request.scheme}://{request.host}"  # the host the tab reached us by
    return origin.lower() in (page.lower(), public_url.lower())


def _on_this_host(context: dict[str, Any], request: web.Request) -> dict[str, Any]:
    """textual-serve's page context with its websocket and static files on the host the page came from."""
    scheme = "wss" if request.scheme == "https" else "ws"
    context["app_websocket_url"] = f"{scheme}://{request.host}{request.app.router['websocket'].url_for()}"
    context["config"]["static"]["url"] = f"{request.scheme}://{request.host}/static/"
    return context


async def _capped_session(
    server: Any, request: web.Request, app_argv: Sequence[str], out: Path, max_sessions: int
) -> web.WebSocketResponse:
    """textual-serve's session, within the cap and with a run folder of its own; `server` counts `sessions`.

    As textual-serve 1.1's handle_websocket, but with this session's command. A session
    counts until its app has ended (it saves after its tab closes), then its folder is
    removed if nothing was ever saved there.
    """
    from aiohttp import web

    if server.sessions >= max_sessions:  # refused before the handshake: no process, no folder
        logging.getLogger("textual-serve").warning(full(max_sessions).strip())
        raise web.HTTPServiceUnavailable(text=full(max_sessions))
    try:
        folder = session_folder(out)
    except TuiGptError as exc:
        logging.getLogger("textual-serve").error(str(exc))
        raise web.HTTPInternalServerError(text=f"tui-gpt serve: {exc}\n") from None
    server.sessions += 1
    print(f"tui-gpt serve: a new session saves into {shown(folder)}", flush=True)
    try:
        return await _run_app(server, request, app_command(app_argv, folder))
    finally:
        server.sessions -= 1
        discard_unsaved(folder)


async def _run_app(server: Server, request: web.Request, command: str) -> web.WebSocketResponse:
    """One tab's session, as textual-serve 1.1's handle_websocket runs it, with `command` as its app."""
    from aiohttp import web
    from textual_serve.app_service import AppService
    from textual_serve.server import to_int

    websocket = web.WebSocketResponse(heartbeat=15)
    size = screen_size(to_int(request.query.get("width", "80"), 80), to_int(request.query.get("height", "24"), 24))
    width, height = size or (80, 24)
    app_service: AppService | None = None

    async def close() -> None:  # AppService asks for a close that returns None; aiohttp's returns a bool
        await websocket.close()

    try:
        await websocket.prepare(request)
        app_service = AppService(
            command,
            write_bytes=websocket.send_bytes,
            write_str=websocket.send_str,
            close=close,
            download_manager=server.download_manager,
            debug=server.debug,
        )
        await app_service.start(width, height)
        await _relay(websocket, app_service, (width, height))
    except asyncio.CancelledError:
        await websocket.close()
    except Exception as error:
        logging.getLogger("textual-serve").exception(error)
    finally:
        if app_service is not None:
            await app_service.stop()  # tells the app its tab is gone, then waits for it to end
    return websocket


def browser_packet(text: str) -> tuple[str, Any] | None:
    """A websocket message from a tab as (kind, data) to relay, with a clamped size; None if malformed.

    textual-serve 1.1's `_process_messages` trusts the page: `[]` or a resize without a width
    raised, ending the session with a traceback, and a negative size reached the app, which crashed.
    """
    try:
        envelope = json.loads(text)
    except (ValueError, RecursionError):
        return None
    if not (isinstance(envelope, list) and envelope and isinstance(envelope[0], str)):
        return None
    kind, data = envelope[0], envelope[1] if len(envelope) > 1 else None
    if kind == "stdin":
        return (kind, data) if isinstance(data, str) else None
    if kind == "resize":
        size = screen_size(data.get("width"), data.get("height")) if isinstance(data, dict) else None
        return (kind, size) if size is not None else None
    if kind == "ping":
        return (kind, data) if len(envelope) == 2 else None
    return (kind, None) if kind in ("blur", "focus") else None


async def _relay(websocket: web.WebSocketResponse, app_service: AppService, size: tuple[int, int]) -> None:
    """Pass a tab's messages to its app, as textual-serve 1.1's `_process_messages` does, checked (`browser_packet`).

    A malformed message is ignored: the first is logged, and how many when the tab closes, so a
    hostile page can neither end its session with a traceback nor flood the log. A resize to the
    size the app has (`size`, at first the one it started with) is dropped: a flood of them costs it nothing.
    """
    from aiohttp import WSMsgType

    log, ignored = logging.getLogger("textual-serve"), 0
    async for message in websocket:
        if message.type != WSMsgType.TEXT:
            continue
        packet = browser_packet(message.data)
        if packet is None:
            ignored += 1
            if ignored == 1:
                log.warning("tui-gpt serve: ignored a malformed message from a tab: %s", ascii(message.data[:60]))
            continue
        kind, data = packet
        if kind == "stdin":
            await app_service.send_bytes(data.encode("utf-8"))
        elif kind == "resize" and data != size:
            size = data
            await app_service.set_terminal_size(*size)
        elif kind == "ping":
            await websocket.send_json(["pong", data])
        else:
            await (app_service.blur() if kind == "blur" else app_service.focus())
    if ignored > 1:
        log.warning("tui-gpt serve: ignored %d malformed messages from a tab in all", ignored)


def guarded_server(
    app_argv: Sequence[str], host: str, port: int, token: str, out: Path, max_sessions: int = MAX_SESSIONS
) -> Server:
    """textual-serve's Server, behind a check that each request carries the token and comes from its own page.

    The token travels from the printed URL (`/?token=`) to the page's websocket in a cookie set
    with the page: textual-serve's page builds its websocket URL by appending `?width=…` to a
    fixed string, so a token put in that URL would be mangled, and the page opens downloads at
    its own origin, which a cookie also covers. HttpOnly keeps it from scripts, SameSite=Strict
    from requests other sites start. A `?token=` on any request is accepted as well.
    """
    import aiohttp_jinja2
    from aiohttp import web
    from textual_serve.server import Server

    cookie = cookie_name(port)

    class GuardedServer(Server):
        sessions = 0  # sessions whose process runs: from the websocket's opening until the app has ended

        @web.middleware
        async def guard(self, request: web.Request, handler: Handler) -> web.StreamResponse:
            """Refuse, before any process starts, a request without the token or from another origin."""
            if not (_same_origin(request, self.public_url) and _has_token(request, cookie, token)):
                raise web.HTTPForbidden(text=REFUSED)
            response = await handler(request)
            if request.path == "/" and "token" in request.query:
                response.set_cookie(cookie, token, path="/", httponly=True, samesite="Strict")
            return response

        async def _make_app(self) -> web.Application:
            app = await super()._make_app()  # textual-serve's routes: /, /ws, /download/{key}, /static
            app.middlewares.append(self.guard)
            return app

        async def handle_index(self, request: web.Request) -> web.StreamResponse:
            """textual-serve's page, with its websocket on the host the page came from.

            textual-serve points it at the bound address: a tab opened as localhost (or through a
            tunnel) would then connect to 127.0.0.1, another site, without the cookie.
            """
            if self.sessions >= max_sessions:  # say why here: the page's websocket would only show "Session ended"
                raise web.HTTPServiceUnavailable(text=full(max_sessions))
            context: dict[str, Any] = await Server.handle_index.__wrapped__(self, request)  # type: ignore[attr-defined]
            return aiohttp_jinja2.render_template("app_index.html", request, _on_this_host(context, request))

        async def handle_websocket(self, request: web.Request) -> web.WebSocketResponse:
            return await _capped_session(self, request, app_argv, out, max_sessions)

        def initialize_logging(self) -> None:
            super().initialize_logging()
            logging.getLogger("aiohttp.access").addFilter(hide_token)

        async def on_startup(self, app: web.Application) -> None:
            # Instead of textual-serve's banner, whose URL has no token.
            print(f"tui-gpt serve: open {self.public_url}/?token={token}  (Ctrl+C stops)", flush=True)

    return GuardedServer(app_command(app_argv), host=host, port=port, title="tui-gpt", public_url=page_url(host, port))


def serve(
    host: str,
    port: int,
    app_argv: Sequence[str],
    out: str = "tui-gpt-run",
    max_sessions: int = MAX_SESSIONS,
    public: bool = False,
) -> int:
    """Serve the app on http://host:port until interrupted; each tab saves into a new folder named after `out`.

    A host beyond loopback needs `public` (--public): the choice to let other machines in is explicit.
    """
    check_host(host, public)
    try:
        import textual_serve.server  # noqa: F401
    except ImportError:
        raise TuiGptError(INSTALL) from None
    if not 0 < port < 65536:
        raise TuiGptError(f"--port {port}: choose a port from 1 to 65535")
    if public and host not in LOCAL:
        print(
            f"tui-gpt: warning: serving on {host}: anyone who can reach port {port} and learns the URL's token "
            "can run tui-gpt here (train, read the text you name, write checkpoints); the token is sent in "
            "the clear over http",
            file=sys.stderr,
        )
    base = Path(out).expanduser().resolve()
    if not base.name:
        raise TuiGptError(f"--out {out}: name a folder; each tab saves into a new one next to it, OUT-1, OUT-2...")
    there = next(p for p in base.parents if p.exists())  # the tabs' folders are made in it (or below it)
    if not (there.is_dir() and os.access(there, os.W_OK | os.X_OK)):
        raise TuiGptError(f"--out {out}: {there} is not a folder this user can write in; each tab makes its own there")
    guarded_server(app_argv, host, port, secrets.token_urlsafe(32), base, max_sessions).serve()
    return 0
