"""HTTP hardening: rate limits, security headers, request timeouts, and recording denials."""

from __future__ import annotations

import asyncio
import logging
import math
import time
from dataclasses import dataclass, field
from typing import Any

from litestar import Request
from litestar.enums import ScopeType
from litestar.types import ASGIApp, Message, Receive, Scope, Send

from domain.authz import SYSTEM_ORG, Principal

log = logging.getLogger(__name__)

SECURITY_HEADERS = [
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    (b"referrer-policy", b"no-referrer"),
    (b"cache-control", b"no-store"),
    (b"content-security-policy", b"default-src 'none'; frame-ancestors 'none'"),
    (b"cross-origin-resource-policy", b"same-origin"),
]
_DOCS_CSP = b"default-src 'self' 'unsafe-inline' https: data:"


class RateLimited(Exception):
    """Too many requests from one principal (or failed attempts from one address)."""

    def __init__(self, retry_after: float, what: str) -> None:
        super().__init__(f"too many {what}; retry in {math.ceil(retry_after)} s")
        self.retry_after = max(1, math.ceil(retry_after))


@dataclass
class TokenBucket:
    """`per_minute` tokens a minute, bursting up to `per_minute`; one bucket per key."""

    per_minute: int
    buckets: dict[str, tuple[float, float]] = field(default_factory=dict)

    def take(self, key: str, what: str) -> None:
        now = time.monotonic()
        rate = self.per_minute / 60.0
        tokens, stamp = self.buckets.get(key, (float(self.per_minute), now))
        tokens = min(float(self.per_minute), tokens + (now - stamp) * rate)
        if tokens < 1.0:
            self.buckets[key] = (tokens, now)
            raise RateLimited((1.0 - tokens) / rate, what)
        self.buckets[key] = (tokens - 1.0, now)
        if len(self.buckets) > 100_000:
            self.buckets.clear()

    def peek(self, key: str, what: str) -> None:
        """Refuse when `key` has no token left, without spending one."""
        now = time.monotonic()
        rate = self.per_minute / 60.0
        tokens, stamp = self.buckets.get(key, (float(self.per_minute), now))
        tokens = min(float(self.per_minute), tokens + (now - stamp) * rate)
        if tokens < 1.0:
            raise RateLimited((1.0 - tokens) / rate, what)


def client_address(request: Request[Any, Any, Any]) -> str:
    return request.client.host if request.client else "unknown"


def hardening_middleware(request_timeout: float, upload_timeout: float):  # type: ignore[no-untyped-def]
    """Security headers on every answer; a bounded time for every request (uploads get longer)."""

    def factory(app: ASGIApp) -> ASGIApp:
        async def middleware(scope: Scope, receive: Receive, send: Send) -> None:
            if scope["type"] != ScopeType.HTTP:
                await app(scope, receive, send)
                return
            path = str(scope.get("path", ""))
            started = False

            async def send_hardened(message: Message) -> None:
                nonlocal started
                if message["type"] == "http.response.start":
                    started = True
                    headers = list(message.get("headers", []))
                    present = {k.lower() for k, _ in headers}
                    for name, value in SECURITY_HEADERS:
                        if name not in present:
                            docs = name == b"content-security-policy" and path.startswith("/schema")
                            headers.append((name, _DOCS_CSP if docs else value))
                    message["headers"] = headers
                await send(message)

            limit = upload_timeout if path.endswith("/scans") else request_timeout
            try:
                async with asyncio.timeout(limit):
                    await app(scope, receive, send_hardened)
            except TimeoutError:
                log.warning("request timed out", extra={"path": path, "limit_s": limit})
                if not started:
                    await _timeout_problem(send_hardened, path, limit)

        return middleware

    return factory


async def _timeout_problem(send: Send, path: str, limit: float) -> None:
    import json

    body = json.dumps(
        {
            "type": "urn:pearl:problem:timeout",
            "title": "Request timed out",
            "status": 503,
            "detail": f"the request took longer than {limit:g} s",
            "instance": path,
        }
    ).encode()
    start: Any = {
        "type": "http.response.start",
        "status": 503,
        "headers": [(b"content-type", b"application/problem+json"), (b"retry-after", b"5")],
    }
    await send(start)
    end: Any = {"type": "http.response.body", "body": body}
    await send(end)


def denial_actor(request: Request[Any, Any, Any]) -> tuple[str, str]:
    """(org, actor) a refusal is recorded under: the caller's org, or `system` for strangers."""
    principal: Principal | None = request.state.get("principal")
    if principal is not None:
        return principal.org, principal.actor
    return SYSTEM_ORG, f"anonymous:{client_address(request)}"
