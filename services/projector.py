"""The projection worker: a durable JetStream pull consumer feeding `projections.runner`."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

import msgspec
import psycopg
from nats.aio.msg import Msg
from nats.errors import Error as NatsError
from nats.errors import TimeoutError as NatsTimeoutError
from nats.js import JetStreamContext
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy
from nats.js.errors import NotFoundError

from contracts.envelope import EventEnvelope
from contracts.subjects import Subjects
from projections.runner import CHECKPOINT, Item, apply_batch, locate_failure
from projections.status import Failure, error_text, record_failure
from services.telemetry import span_from

log = logging.getLogger(__name__)
_decoder = msgspec.json.Decoder(EventEnvelope)
#: batches that only find a gap (an earlier message missing) this long: resubscribe
STALL_RESUBSCRIBE_S = 3.0


class Projector:
    """Fetches batches, applies each in one transaction with the checkpoint, then acks."""

    def __init__(
        self, js: JetStreamContext, subjects: Subjects, database_url: str, batch_size: int = 256
    ) -> None:
        self.js = js
        self.subjects = subjects
        self.database_url = database_url
        self.batch_size = batch_size
        self.durable = f"{subjects.root}-projector"
        self.applied = 0
        #: the failure last recorded (logged once; cleared when a batch moves the checkpoint)
        self.failure: Failure | None = None

    async def resume_seq(self) -> int | None:
        """The stream sequence after the checkpoint (None when unknown: after a rebuild)."""
        try:
            async with await psycopg.AsyncConnection.connect(
                self.database_url, connect_timeout=5
            ) as conn:
                cur = await conn.execute(
                    "SELECT stream_seq FROM projection_checkpoint WHERE name = %s", (CHECKPOINT,)
                )
                row = await cur.fetchone()
        except psycopg.Error as exc:
            log.warning("projector cannot read its checkpoint", extra={"error": str(exc)})
            return None
        return None if row is None or row[0] is None else int(row[0]) + 1

    async def subscribe(self) -> Any:
        """The durable consumer, positioned right after the checkpoint.

        Messages a killed projector had fetched but not acked would otherwise come back only
        after `ack_wait`, and every later message is held back until then (they must be applied
        in order): recreating the consumer at the checkpoint resumes at once.
        """
        config = ConsumerConfig(
            durable_name=self.durable,
            ack_policy=AckPolicy.EXPLICIT,
            deliver_policy=DeliverPolicy.ALL,
            ack_wait=30,
            max_ack_pending=self.batch_size * 4,
        )
        start = await self.resume_seq()
        if start is not None:
            with contextlib.suppress(NotFoundError):
                await self.js.delete_consumer(self.subjects.events_stream, self.durable)
            config.deliver_policy = DeliverPolicy.BY_START_SEQUENCE
            config.opt_start_seq = start
            log.info("projector resuming", extra={"stream_seq": start})
        return await self.js.pull_subscribe(
            self.subjects.all_events,
            durable=self.durable,
            stream=self.subjects.events_stream,
            config=config,
        )

    @staticmethod
    def to_items(msgs: list[Msg]) -> list[Item]:
        items = []
        for msg in msgs:
            seq = msg.metadata.sequence.stream
            try:
                items.append(Item(seq, _decoder.decode(msg.data)))
            except (msgspec.ValidationError, msgspec.DecodeError):
                log.error("undecodable event skipped", extra={"stream_seq": seq})
                items.append(Item(seq, None))
        return items

    async def handle(self, conn: psycopg.AsyncConnection[Any], msgs: list[Msg]) -> bool:
        """Apply a batch; True when nothing could be applied (an earlier message is missing)."""
        items = self.to_items(msgs)
        first = msgs[0].headers or {}
        with span_from(first, "projector.batch", size=len(msgs)):
            outcome = await apply_batch(conn, items)
        done = len(msgs) if outcome.gap_at is None else outcome.gap_at
        await asyncio.gather(*(m.ack() for m in msgs[:done]))
        await asyncio.gather(*(m.nak(delay=1.0) for m in msgs[done:]))
        self.applied += outcome.applied
        if self.failure is not None and outcome.applied:
            log.info("projection recovered", extra={"position": outcome.position})
            self.failure = None
        return outcome.gap_at == 0 and outcome.applied == 0

    async def failed(
        self, conn: psycopg.AsyncConnection[Any], msgs: list[Msg], exc: Exception
    ) -> float:
        """Record why a batch could not be applied where every process sees it; log it once.

        Returns how long to wait before the batch is redelivered. A lost connection to
        PostgreSQL (nothing could record it anyway) or to NATS (an ack that did not reach it: the
        batch is redelivered and skipped as applied) is not a projection failure.
        """
        lost = (psycopg.OperationalError, OSError, NatsError)  # a connection, not the batch
        if isinstance(exc, lost) or conn.closed or conn.broken:
            log.warning("projection batch failed; will be redelivered", extra={"error": str(exc)})
            return 1.0
        projection, position = await locate_failure(conn, self.to_items(msgs))
        failure = Failure(CHECKPOINT, projection, position, error_text(exc))
        attempts = 1
        try:
            attempts = await record_failure(conn, failure)
        except psycopg.Error:
            log.warning("could not record the projection failure", exc_info=True)
        if self.failure is None or self.failure.key != failure.key:
            log.error(
                "projection failed",
                extra={
                    "checkpoint": failure.name,
                    "projection": failure.projection,
                    "position": failure.position,
                    "error": failure.error,
                    "detail": str(exc),
                },
            )
        self.failure = failure
        return min(float(attempts), 5.0)

    async def run(self, stop: asyncio.Event) -> None:
        sub = await self.subscribe()
        conn: psycopg.AsyncConnection[Any] | None = None
        stalled_since: float | None = None
        while not stop.is_set():
            try:
                if conn is None or conn.closed:
                    conn = await psycopg.AsyncConnection.connect(self.database_url)
                msgs = await sub.fetch(self.batch_size, timeout=1.0)
            except (NatsTimeoutError, TimeoutError):
                continue
            except (psycopg.Error, OSError) as exc:
                log.warning("projector cannot reach PostgreSQL", extra={"error": str(exc)})
                await asyncio.sleep(1.0)
                continue
            except NatsError as exc:  # e.g. NATS restarted and the consumer is being recovered
                log.warning("projector cannot fetch; subscribing again", extra={"error": repr(exc)})
                await asyncio.sleep(0.5)
                with contextlib.suppress(NatsError, TimeoutError):
                    sub = await asyncio.wait_for(self.subscribe(), 5.0)
                continue
            if not msgs:
                continue
            try:
                if not await self.handle(conn, msgs):
                    stalled_since = None
                elif stalled_since is None:
                    stalled_since = asyncio.get_running_loop().time()
                elif asyncio.get_running_loop().time() - stalled_since > STALL_RESUBSCRIBE_S:
                    # a message delivered before a connection was cut is lost in transit and
                    # comes back only after ack_wait, holding back every later one: resume at
                    # the checkpoint instead
                    log.warning("projector stalled on a gap; subscribing at its checkpoint")
                    stalled_since = None
                    with contextlib.suppress(NatsError, TimeoutError):
                        sub = await asyncio.wait_for(self.subscribe(), 5.0)
            except NatsError as exc:
                # the batch and its checkpoint are committed (or rolled back): unacked messages
                # come again after ack_wait and are skipped as duplicates, or applied then
                log.warning("projector could not ack a batch", extra={"error": repr(exc)})
            except Exception as exc:  # any batch failure is recorded, never fatal
                delay = await self.failed(conn, msgs, exc)
                await asyncio.gather(*(m.nak(delay=delay) for m in msgs), return_exceptions=True)
                await conn.close()
                conn = None
        if conn is not None:
            await conn.close()
