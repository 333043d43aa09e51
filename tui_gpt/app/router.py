"""The router: hands each trainer event to the parts of the app that wait for its type."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable
from typing import Any


class Router:
    def __init__(self) -> None:
        self._routes: dict[type, list[Callable[[Any], None]]] = defaultdict(list)

    def add(self, kind: type, handler: Callable[[Any], None]) -> None:
        self._routes[kind].append(handler)

    def route(self, event: Any) -> None:
        for handler in self._routes.get(type(event), ()):
            handler(event)
