"""A lease held in a JetStream key-value bucket: at most one holder at a time, lost on death.

The bucket's TTL (max_age) is the lease's TTL: the key is created only if absent, renewed by
updating it against the revision we last wrote (a revision mismatch means someone else took it)
and deleted on release only if we still hold it. A holder that stops renewing — it died, or
lost NATS — loses the lease when its last write ages out of the bucket; another then acquires.

A holder also believes it holds the lease only until `ttl` after it *sent* its last successful
write, so it stops acting no later than the server lets anyone else start.
"""

from __future__ import annotations

import logging
import os
import socket
import time
import uuid
from collections.abc import Callable
from typing import Protocol

from nats.errors import Error as NatsError
from nats.js import JetStreamContext
from nats.js.errors import BadRequestError, KeyNotFoundError, KeyWrongLastSequenceError
from nats.js.kv import KeyValue

log = logging.getLogger(__name__)
#: JetStream's "stream name already in use with a different configuration"
STREAM_CONFIG_MISMATCH = 10058


class Lease(Protocol):
    """What a lease user needs (`KvLease`; tests use fakes)."""

    owner: str

    @property
    def held(self) -> bool: ...

    @property
    def renew_every(self) -> float: ...

    async def acquire(self) -> bool: ...

    async def renew(self) -> bool: ...

    async def release(self) -> None: ...


def owner_id() -> str:
    """Unique per process: host, pid and a random part (a restarted pid is another owner)."""
    return f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:8]}"


async def lease_bucket(js: JetStreamContext, bucket: str, ttl: float) -> tuple[KeyValue, float]:
    """The bucket (created with `ttl` if absent) and the TTL it really has.

    A bucket created earlier with another TTL is used as it is, with its own TTL.
    """
    try:
        kv = await js.create_key_value(bucket=bucket, ttl=ttl, history=1)
    except BadRequestError as exc:
        if exc.err_code != STREAM_CONFIG_MISMATCH:
            raise
        kv = await js.key_value(bucket)
    actual = (await kv.status()).ttl or ttl
    if actual != ttl:
        log.warning(
            "lease bucket has another TTL; using it",
            extra={"bucket": bucket, "ttl": actual, "configured_ttl": ttl},
        )
    return kv, actual


class KvLease:
    """One key of a lease bucket, held by `owner` while it keeps renewing it every ttl/3."""

    def __init__(
        self,
        kv: KeyValue,
        key: str,
        owner: str,
        ttl: float,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.kv = kv
        self.key = key
        self.owner = owner
        self.ttl = ttl
        self.clock = clock
        self._revision: int | None = None
        self._valid_until = 0.0

    @classmethod
    async def open(
        cls, js: JetStreamContext, bucket: str, ttl: float, key: str, owner: str | None = None
    ) -> KvLease:
        kv, actual = await lease_bucket(js, bucket, ttl)
        return cls(kv, key, owner or owner_id(), actual)

    @property
    def held(self) -> bool:
        """We wrote the key last and that write cannot have expired yet."""
        return self._revision is not None and self.clock() < self._valid_until

    @property
    def renew_every(self) -> float:
        return self.ttl / 3

    async def acquire(self) -> bool:
        """Take the lease if it is free (absent, deleted or expired); True if we hold it now."""
        started = self.clock()
        try:
            revision = await self.kv.create(self.key, self.owner.encode())
        except KeyWrongLastSequenceError:
            return await self._adopt()
        self._held_from(revision, started)
        return True

    async def _adopt(self) -> bool:
        """The key exists: ours if it holds our owner id (then renewed at once), else taken."""
        try:
            entry = await self.kv.get(self.key)
        except KeyNotFoundError:  # deleted or expired meanwhile: the next attempt may create it
            self._revision = None
            return False
        if entry.value is None or entry.value.decode() != self.owner:
            self._revision = None
            return False
        self._revision = entry.revision
        return await self.renew()

    async def renew(self) -> bool:
        """Extend the lease by writing over our last revision; False if it was lost."""
        if self._revision is None:
            return False
        started = self.clock()
        try:
            revision = await self.kv.update(self.key, self.owner.encode(), last=self._revision)
        except KeyWrongLastSequenceError:
            self._revision = None
            return False
        self._held_from(revision, started)
        return True

    async def release(self) -> None:
        """Delete the key if we still hold it, so another instance acquires it at once."""
        revision, self._revision = self._revision, None
        if revision is None:
            return
        try:
            await self.kv.delete(self.key, last=revision)
        except NatsError as exc:  # taken meanwhile, or NATS is gone: it expires on its own
            log.info("lease not released", extra={"key": self.key, "reason": str(exc)})

    def _held_from(self, revision: int, started: float) -> None:
        self._revision = revision
        self._valid_until = started + self.ttl
