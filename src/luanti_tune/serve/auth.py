"""Bearer-token check as a small ASGI middleware, so every router (present and future) is covered.

When a token is configured (always the case off loopback: :class:`Settings` refuses to start
without one) every request except the public paths (``/healthz`` by default) needs
``Authorization: Bearer <token>``; others get 401 with a JSON body.
"""

from __future__ import annotations

import hmac
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

import orjson

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


class BearerAuth:
    """Refuse requests without the bearer token; ``public_paths`` is read live (may grow later)."""

    def __init__(self, app: ASGIApp, token: str | None, public_paths: set[str]) -> None:
        self.app = app
        self.expected = f"Bearer {token}".encode() if token else None
        self.public_paths = public_paths

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if self.expected is None or scope["type"] not in ("http", "websocket") or scope["path"] in self.public_paths:
            await self.app(scope, receive, send)
            return
        for name, value in scope.get("headers", ()):
            if name == b"authorization" and hmac.compare_digest(value, self.expected):
                await self.app(scope, receive, send)
                return
        if scope["type"] == "websocket":
            await send({"type": "websocket.close", "code": 1008})
            return
        body = orjson.dumps({"detail": "missing or wrong bearer token (Authorization: Bearer <token>)"})
        await send(
            {
                "type": "http.response.start",
                "status": 401,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(body)).encode()),
                    (b"www-authenticate", b"Bearer"),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})
