"""Serve the app to web browsers through textual-serve (the optional `serve` extra).

Every browser tab that opens the page starts its own tui-gpt process on this machine, with
the app's options given to `tui-gpt serve`. Only the tab opened with the URL printed at start
can drive it: that URL carries a secret made for this launch, and the websocket must come from
the page's own origin. Without the secret and the origin, any web page the user visits could
open a websocket to the port and read their files through the app.
"""

from __future__ import annotations

import hmac
import logging
import re
import secrets
import shlex
import sys
from collections.abc import Awaitable, Callable, Sequence
from typing import TYPE_CHECKING, Any

from tui_gpt.errors import TuiGptError

if TYPE_CHECKING:
    from aiohttp import web
    from textual_serve.server import Server

LOCAL = ("127.0.0.1", "localhost", "::1")
INSTALL = "tui-gpt serve needs textual-serve: pip install 'tui-gpt[serve]' (or: pip install textual-serve)"
REFUSED = "tui-gpt serve: open the URL it printed at start, with its token, in your own browser\n"

TOKEN_IN_URL = re.compile(r"token=[^&\s\"]*")

Handler = Callable[["web.Request"], Awaitable["web.StreamResponse"]]


def app_command(app_argv: Sequence[str]) -> str:
    """The shell command textual-serve runs for each browser session."""
    return shlex.join([sys.executable, "-m", "tui_gpt", *app_argv])


def cookie_name(port: int) -> str:
    """The token's cookie; browsers share cookies across ports, so two servers need two names."""
    return f"tui-gpt-token-{port}"


def hide_token(record: logging.LogRecord) -> bool:
    """Blank the token in an access-log line: the terminal may be shared, or pasted in a bug report."""
    record.msg, record.args = TOKEN_IN_URL.sub("token=…", record.getMessage()), None
    return True


def guarded_server(command: str, host: str, port: int, token: str) -> Server:
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
    expected = token.encode()

    def has_token(request: web.Request) -> bool:
        given = request.query.get("token") or request.cookies.get(cookie) or ""
        return hmac.compare_digest(given.encode(), expected)

    def origin_ok(request: web.Request, public_url: str) -> bool:
        origin = request.headers.get("Origin")
        if origin is None:  # browsers send one with every websocket; a page load may have none
            return request.headers.get("Upgrade", "").lower() != "websocket" and request.path != "/ws"
        page = f"{request.scheme}://{request.host}"  # the host the tab reached us by
        return origin.lower() in (page.lower(), public_url.lower())

    class GuardedServer(Server):
        @web.middleware
        async def guard(self, request: web.Request, handler: Handler) -> web.StreamResponse:
            """Refuse, before any process starts, a request without the token or from another origin."""
            if not (origin_ok(request, self.public_url) and has_token(request)):
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
            context: dict[str, Any] = await Server.handle_index.__wrapped__(self, request)  # type: ignore[attr-defined]
            scheme = "wss" if request.scheme == "https" else "ws"
            context["app_websocket_url"] = f"{scheme}://{request.host}{request.app.router['websocket'].url_for()}"
            context["config"]["static"]["url"] = f"{request.scheme}://{request.host}/static/"
            return aiohttp_jinja2.render_template("app_index.html", request, context)

        def initialize_logging(self) -> None:
            super().initialize_logging()
            logging.getLogger("aiohttp.access").addFilter(hide_token)

        async def on_startup(self, app: web.Application) -> None:
            # Instead of textual-serve's banner, whose URL has no token.
            print(f"tui-gpt serve: open {self.public_url}/?token={token}  (Ctrl+C stops)", flush=True)

    return GuardedServer(command, host=host, port=port, title="tui-gpt")


def serve(host: str, port: int, app_argv: Sequence[str]) -> int:
    """Serve the app on http://host:port until interrupted."""
    try:
        import textual_serve.server  # noqa: F401
    except ImportError:
        raise TuiGptError(INSTALL) from None
    if not 0 < port < 65536:
        raise TuiGptError(f"--port {port}: choose a port from 1 to 65535")
    if host not in LOCAL:
        print(
            f"tui-gpt: warning: serving on {host}: anyone who can reach port {port} and learns the URL's token "
            "can run tui-gpt here (train, read the text you name, write checkpoints); the token is sent in "
            "the clear over http",
            file=sys.stderr,
        )
    guarded_server(app_command(app_argv), host, port, secrets.token_urlsafe(32)).serve()
    return 0
