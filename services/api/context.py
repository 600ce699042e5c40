"""Per-process API state: the Application, the read pool, NATS, and authentication."""

from __future__ import annotations

import asyncio
import hashlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from litestar import Request
from nats.aio.client import Client

from domain.authz import Principal
from domain.errors import InvalidInput, Unauthenticated
from domain.pearl_app import PearlApp
from projections import queries
from projections.queries import Pool
from services.api.security import TokenBucket, client_address
from services.auth import Authenticator
from services.gate import GateService
from services.reports import ReportStore
from services.settings import Settings

AUTH_CACHE_SECONDS = 5.0
KEY_USE_INTERVAL = 3600.0


@dataclass
class ApiContext:
    """Everything a request handler needs, built once by the composition root."""

    settings: Settings
    pearl: PearlApp
    pool: Pool
    nc: Client | None = None
    reports: ReportStore | None = None
    _auth_cache: dict[str, tuple[float, Principal]] = field(default_factory=dict)
    _last_marked: dict[str, float] = field(default_factory=dict)
    _background: set[asyncio.Task[None]] = field(default_factory=set)
    _requests: TokenBucket | None = None
    _failures: TokenBucket | None = None
    authenticator: Authenticator = field(init=False)
    gate: GateService = field(init=False)

    def __post_init__(self) -> None:
        self.authenticator = Authenticator(self.settings, self.pearl)
        self.gate = GateService(self.pearl, self.pool)
        self._requests = TokenBucket(self.settings.rate_limit_per_minute)
        self._failures = TokenBucket(self.settings.auth_failures_per_minute)

    async def authenticate(self, request: Request[Any, Any, Any]) -> Principal:
        """The caller, rate limited per principal; failed attempts are limited per address."""
        principal = await self.authenticate_with(
            lambda: bearer_token(request), client_address(request)
        )
        request.state.principal = principal
        return principal

    async def authenticate_with(
        self, token: Callable[[], str], address: str, *, cached: bool = True
    ) -> Principal:
        """The principal of a credential, with the rate limits of every request (HTTP, MCP).

        `token` raises Unauthenticated when there is no credential (a failed attempt too);
        `cached=False` reads the credential afresh (a paused agent is refused at once).
        """
        assert self._requests is not None and self._failures is not None
        self._failures.peek(address, "failed authentication attempts")
        try:
            principal = await self._principal(token(), cached)
        except Unauthenticated:
            self._failures.take(address, "failed authentication attempts")
            raise
        self._requests.take(principal.id, "requests")
        self._note_use(principal)
        return principal

    def _note_use(self, principal: Principal) -> None:
        """Record an API key's last use at most once an hour per process, off the request path."""
        if principal.credential != "api_key":
            return
        now = time.monotonic()
        if now - self._last_marked.get(principal.id, -KEY_USE_INTERVAL) < KEY_USE_INTERVAL:
            return
        self._last_marked[principal.id] = now
        task = asyncio.create_task(asyncio.to_thread(self._mark, principal.id))
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    def _mark(self, key_id: str) -> None:
        try:
            self.pearl.mark_key_used(key_id)
        except Exception:  # a failed note of use must never fail a request
            logging.getLogger(__name__).warning("could not record key use", exc_info=True)

    async def _principal(self, token: str, use_cache: bool = True) -> Principal:
        digest = hashlib.sha256(token.encode()).hexdigest()
        cached = self._auth_cache.get(digest)
        now = time.monotonic()
        if use_cache and cached and cached[0] > now:
            return cached[1]
        principal = await asyncio.to_thread(self.authenticator.authenticate, token)
        if principal.kind == "agent":
            return principal  # never cached: a paused agent is refused on its next request
        if len(self._auth_cache) > 10_000:
            self._auth_cache.clear()
        self._auth_cache[digest] = (now + AUTH_CACHE_SECONDS, principal)
        return principal

    def forget_principals(self) -> None:
        """Drop cached credentials (after a change to who may do what)."""
        self._auth_cache.clear()

    async def wait_for(self, min_position: int | None) -> None:
        """Read-your-writes: block (bounded) until projections reached `min_position`."""
        if not min_position or await queries.position(self.pool) >= min_position:
            return
        head = await asyncio.to_thread(lambda: self.pearl.position)
        if min_position > head:
            raise PositionBeyondHead(min_position, head)
        limit = self.settings.read_wait_max_seconds
        if not await queries.wait_for_position(self.pool, min_position, limit):
            raise ProjectionLag(min_position, limit)


class PositionBeyondHead(InvalidInput):
    """`min_position` names a position no event has (yet): waiting for it could not end."""

    code = "position-beyond-head"

    def __init__(self, position: int, head: int) -> None:
        super().__init__(
            f"min_position {position} is beyond the event store's last position {head}:"
            " send a position a write returned"
        )
        self.position = position
        self.head = head


class ProjectionLag(Exception):
    """The read models did not reach the requested position in time."""

    def __init__(self, position: int, waited: float) -> None:
        super().__init__(f"read models have not reached position {position} after {waited:.1f}s")
        self.position = position


def bearer_token(request: Request[Any, Any, Any]) -> str:
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() == "bearer" and token.strip():
        return token.strip()
    key = request.headers.get("x-api-key", "").strip()
    if key:
        return key
    raise Unauthenticated("send an API key as 'Authorization: Bearer <key>'")


def parse_position(value: int | None) -> int | None:
    if value is not None and value < 0:
        raise InvalidInput("min_position must be >= 0")
    return value
