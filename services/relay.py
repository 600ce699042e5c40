"""The relay: tails the event store's notification log and publishes each event to JetStream.

The event store is the outbox. Every event is published in store order on
`<root>.evt.<org>.<aggregate>.<event>` with `Nats-Msg-Id` = `<root>-<position>`, and with
`Nats-Expected-Last-Msg-Id` naming the previous one, so the stream can never hold a later event
without every earlier one. On start the relay resumes after the last event in the stream; the
stream is its only checkpoint, so a restart at any moment neither skips nor duplicates.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Sequence
from typing import Any

import msgspec
import psycopg
from eventsourcing.persistence import Notification
from nats.js import JetStreamContext
from nats.js.errors import NotFoundError

from contracts.envelope import EventEnvelope
from contracts.subjects import Subjects
from domain.pearl_app import PearlApp
from domain.stored import EnvelopeDecoder
from services.telemetry import headers_with_trace, span_from

log = logging.getLogger(__name__)
POSITION_HEADER = "Pearl-Position"
_encoder = msgspec.json.Encoder()


class Relay:
    """Publishes the notification log to the events stream, in order, exactly once."""

    def __init__(
        self,
        app: PearlApp,
        js: JetStreamContext,
        subjects: Subjects,
        database_url: str,
        batch_size: int = 500,
    ) -> None:
        self.app = app
        self.js = js
        self.subjects = subjects
        self.database_url = database_url
        self.batch_size = batch_size
        self.position = 0
        self.published = 0
        self.decoder = EnvelopeDecoder(app.mapper)

    def msg_id(self, position: int) -> str:
        return f"{self.subjects.root}-{position}"

    async def resume(self) -> int:
        """The store position of the last event in the stream (0 when it is empty)."""
        info = await self.js.stream_info(self.subjects.events_stream)
        if not info.state.last_seq:
            return 0
        try:
            msg = await self.js.get_msg(self.subjects.events_stream, seq=info.state.last_seq)
        except NotFoundError:
            return 0
        return int((msg.headers or {}).get(POSITION_HEADER, "0"))

    def envelopes(self, notifications: Sequence[Notification]) -> list[EventEnvelope]:
        """The batch's envelopes, decoded as the rebuild decodes them (`domain/stored.py`)."""
        envelope = self.decoder.envelope
        return [
            envelope(n.id, n.originator_id, n.originator_version, n.topic, n.state)
            for n in notifications
        ]

    async def publish(self, envelopes: Sequence[EventEnvelope]) -> None:
        """Publish a batch pipelined; raise if any was not stored (the stream stays gap-free)."""
        futures = []
        previous = self.msg_id(self.position) if self.position else None
        for env in envelopes:
            headers = {"Nats-Msg-Id": self.msg_id(env.position), POSITION_HEADER: str(env.position)}
            if previous is not None:
                headers["Nats-Expected-Last-Msg-Id"] = previous
            carrier = {"traceparent": env.traceparent} if env.traceparent else None
            with span_from(carrier, "relay.publish", position=env.position, type=env.type):
                headers = headers_with_trace(headers)
            subject = self.subjects.event(env.org, env.aggregate, env.type.split(".")[2])
            futures.append(
                await self.js.publish_async(subject, _encoder.encode(env), headers=headers)
            )
            previous = self.msg_id(env.position)
        acks = await asyncio.gather(*futures, return_exceptions=True)
        for env, ack in zip(envelopes, acks, strict=True):
            if isinstance(ack, BaseException):
                raise RuntimeError(f"publishing position {env.position} failed: {ack!r}")
            self.position = env.position
            self.published += 0 if getattr(ack, "duplicate", False) else 1

    async def step(self) -> int:
        """Publish the next batch; returns how many events it carried."""
        notifications = await asyncio.to_thread(
            self.app.recorder.select_notifications,
            self.position + 1,
            self.batch_size,
        )
        if notifications:
            await self.publish(self.envelopes(notifications))
        return len(notifications)

    async def run(self, stop: asyncio.Event) -> None:
        """Relay until `stop` is set; on any failure resume from the stream after a pause."""
        self.position = await self.resume()
        log.info("relay resuming", extra={"position": self.position})
        async with await _listener(self.database_url, self.app) as waiter:
            while not stop.is_set():
                try:
                    if await self.step():
                        continue
                    await waiter.wait(stop, timeout=1.0)
                except (RuntimeError, psycopg.Error, OSError, TimeoutError) as exc:
                    log.warning(
                        "relay batch failed, resuming from stream", extra={"error": str(exc)}
                    )
                    await asyncio.sleep(0.5)
                    with contextlib.suppress(Exception):
                        self.position = await self.resume()


class _Waiter:
    """Wakes the relay when the event store NOTIFYs a new commit (or after a timeout)."""

    def __init__(self, conn: psycopg.AsyncConnection[Any]) -> None:
        self.conn = conn

    async def wait(self, stop: asyncio.Event, timeout: float) -> None:
        with contextlib.suppress(TimeoutError, psycopg.Error):
            async with asyncio.timeout(timeout):
                gen = self.conn.notifies()
                async for _ in gen:
                    break

    async def __aenter__(self) -> _Waiter:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.conn.close()


async def _listener(database_url: str, app: PearlApp) -> _Waiter:
    conn = await psycopg.AsyncConnection.connect(database_url, autocommit=True)
    channel = f"{app.name.lower()}_events"
    await conn.execute(f'LISTEN "{channel}"')
    return _Waiter(conn)
