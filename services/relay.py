"""The relay: tails the event store's notification log and publishes each event to JetStream.

The event store is the outbox. Every event is published in store order on
`<root>.evt.<org>.<aggregate>.<event>` with `Nats-Msg-Id` = `<root>-<position>`, and with
`Nats-Expected-Last-Msg-Id` naming the previous one, so the stream can never hold a later event
without every earlier one. On start the relay resumes after the last event in the stream; the
stream is its only checkpoint, so a restart at any moment neither skips nor duplicates.

No await on the bus is unbounded: a batch's acks are awaited at most `timeout` seconds (a
connection lost while they were pending never answers; their futures are cancelled, so the
client's pending-publish slots come back), and after any failure the relay reads the stream's
last position again before it publishes anything more.
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
from nats.errors import Error as NatsError
from nats.js import JetStreamContext
from nats.js.errors import NotFoundError
from opentelemetry import metrics

from contracts.envelope import EventEnvelope
from contracts.subjects import Subjects
from domain.pearl_app import PearlApp
from domain.stored_decoder import EnvelopeDecoder
from services.telemetry import headers_with_trace, span_from

log = logging.getLogger(__name__)
POSITION_HEADER = "Pearl-Position"
#: seconds any one request to NATS (a batch's acks, stream info, a message) may take
BUS_TIMEOUT_S = 5.0
#: pause after a failed batch before the relay reads the stream again (and between tries)
RETRY_PAUSE_S = 0.5
_encoder = msgspec.json.Encoder()


class PublishError(RuntimeError):
    """A batch was not (entirely) stored in the stream; the relay resumes from the stream."""


async def stream_position(
    js: JetStreamContext, subjects: Subjects, timeout: float = BUS_TIMEOUT_S
) -> int:
    """The store position of the last event in the events stream (0 when it is empty): what
    the relay has published, from its `Pearl-Position` header (readiness compares it with the
    store head for the relay lag)."""
    async with asyncio.timeout(timeout):
        info = await js.stream_info(subjects.events_stream)
        if not info.state.last_seq:
            return 0
        try:
            msg = await js.get_msg(subjects.events_stream, seq=info.state.last_seq)
        except NotFoundError:
            return 0
    return int((msg.headers or {}).get(POSITION_HEADER, "0"))


class Relay:
    """Publishes the notification log to the events stream, in order, exactly once."""

    def __init__(
        self,
        app: PearlApp,
        js: JetStreamContext,
        subjects: Subjects,
        database_url: str,
        batch_size: int = 500,
        timeout: float = BUS_TIMEOUT_S,
    ) -> None:
        self.app = app
        self.js = js
        self.subjects = subjects
        self.database_url = database_url
        self.batch_size = batch_size
        self.timeout = timeout
        self.position = 0
        self.published = 0
        self.failures = 0
        self.decoder = EnvelopeDecoder(app.mapper)
        metrics.get_meter("pearl").create_observable_gauge(
            "pearl.relay.position",
            callbacks=[lambda _options: [metrics.Observation(self.position)]],
            description="store position of the last event the relay has published",
        )

    def msg_id(self, position: int) -> str:
        return f"{self.subjects.root}-{position}"

    async def resume(self) -> int:
        """The store position of the last event in the stream (0 when it is empty)."""
        return await stream_position(self.js, self.subjects, self.timeout)

    def envelopes(self, notifications: Sequence[Notification]) -> list[EventEnvelope]:
        """The batch's envelopes, decoded as the rebuild decodes them (`domain/stored_decoder`)."""
        envelope = self.decoder.envelope
        return [
            envelope(n.id, n.originator_id, n.originator_version, n.topic, n.state)
            for n in notifications
        ]

    async def publish(self, envelopes: Sequence[EventEnvelope]) -> None:
        """Publish a batch pipelined; raise PublishError unless every one was stored within
        `timeout` (the stream stays gap-free: the next batch follows what the stream holds)."""
        futures: list[asyncio.Future[Any]] = []
        previous = self.msg_id(self.position) if self.position else None
        try:
            for env in envelopes:
                headers = {
                    "Nats-Msg-Id": self.msg_id(env.position),
                    POSITION_HEADER: str(env.position),
                }
                if previous is not None:
                    headers["Nats-Expected-Last-Msg-Id"] = previous
                carrier = {"traceparent": env.traceparent} if env.traceparent else None
                with span_from(carrier, "relay.publish", position=env.position, type=env.type):
                    headers = headers_with_trace(headers)
                subject = self.subjects.event(env.org, env.aggregate, env.type.split(".")[2])
                futures.append(
                    await self.js.publish_async(
                        subject, _encoder.encode(env), headers=headers, wait_stall=self.timeout
                    )
                )
                previous = self.msg_id(env.position)
            async with asyncio.timeout(self.timeout):
                acks = await asyncio.gather(*futures, return_exceptions=True)
        except (TimeoutError, NatsError, OSError) as exc:
            raise PublishError(f"publishing a batch failed: {exc!r}") from exc
        finally:
            for future in futures:  # an ack that never comes must not hold a pending slot
                if not future.done():
                    future.cancel()
        for env, ack in zip(envelopes, acks, strict=True):
            if isinstance(ack, BaseException):
                raise PublishError(f"publishing position {env.position} failed: {ack!r}")
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
        """Relay until `stop` is set; after any failure pause, re-read the stream's position,
        and go on from there (a failed batch may have been stored in part)."""
        waiter = _Waiter(self.database_url, f"{self.app.name.lower()}_events")
        resumed = False
        try:
            while not stop.is_set():
                try:
                    if not resumed:
                        self.position = await self.resume()
                        resumed = True
                        log.info("relay resuming", extra={"position": self.position})
                    if await self.step():
                        self.failures = 0
                        continue
                    await waiter.wait(timeout=1.0)
                except Exception as exc:  # any failure at all: resume from the stream
                    self.failures += 1
                    resumed = False
                    log.warning(
                        "relay batch failed, resuming from stream",
                        extra={"error": repr(exc), "position": self.position},
                    )
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(stop.wait(), RETRY_PAUSE_S)
        finally:
            await waiter.close()


class _Waiter:
    """Wakes the relay when the event store NOTIFYs a new commit (or after a timeout); a lost
    LISTEN connection is opened again (until then the timeout paces the relay)."""

    def __init__(self, database_url: str, channel: str) -> None:
        self.database_url = database_url
        self.channel = channel
        self.conn: psycopg.AsyncConnection[Any] | None = None

    async def wait(self, timeout: float) -> None:
        try:
            async with asyncio.timeout(timeout):
                if self.conn is None or self.conn.closed:
                    await self.close()
                    self.conn = await psycopg.AsyncConnection.connect(
                        self.database_url, autocommit=True, connect_timeout=max(int(timeout), 1)
                    )
                    await self.conn.execute(f'LISTEN "{self.channel}"')
                async for _ in self.conn.notifies():
                    break
        except TimeoutError:
            return
        except (psycopg.Error, OSError):
            await self.close()
            await asyncio.sleep(timeout)  # the store is away: poll at the timeout's pace

    async def close(self) -> None:
        conn, self.conn = self.conn, None
        if conn is not None:
            with contextlib.suppress(psycopg.Error, OSError):
                await conn.close()
