"""The command worker: FastStream subscriber on `<root>.cmd.>` calling the Application.

Each command is processed exactly once: its envelope id is its idempotency key, recorded in the
same transaction as its events. A command that can never succeed (malformed, unknown, refused)
goes to the dead-letter stream with the reason and is acked; a transient failure is retried.

FastStream never decodes a body: the subscriber's parser and decoder hand the raw bytes over,
and everything that can fail on untrusted input (JSON, nesting depth, types, headers, subject)
fails inside `CommandProcessor.decode`, where any exception at all is a dead letter. Deliveries
are bounded: the consumer's `max_deliver` is `MAX_DELIVER` plus spares, and a message at its
`MAX_DELIVER`th delivery is dead-lettered, never dropped. While a command runs, the worker
tells JetStream it is in progress every `ACK_WAIT_S / 3`, so the ack wait can be short: a
command in flight when a worker dies is redelivered `ACK_WAIT_S` after its last heartbeat.
A transient failure (PostgreSQL or NATS away) is retried in place, at most a second apart,
for up to `TRANSIENT_RETRY_S` before the delivery is given back.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import msgspec
from faststream import FastStream
from faststream.message import StreamMessage
from faststream.middlewares import AckPolicy
from faststream.nats import JStream, NatsBroker, PullSub
from faststream.nats.annotations import NatsMessage
from faststream.nats.message import NatsMessage as RawNatsMessage
from nats.aio.msg import Msg
from nats.errors import Error as NatsError
from nats.errors import MaxPayloadError
from nats.js import JetStreamContext
from psycopg import DataError, InterfaceError, OperationalError

from contracts.envelope import CommandEnvelope
from contracts.subjects import Subjects
from contracts.text import escape_controls
from domain.authz import SYSTEM_ORG, Principal
from domain.base import current_channel
from domain.errors import ConcurrencyConflict, CrossOrg, Forbidden, PearlError, Unauthenticated
from domain.idempotency import request_digest
from domain.kernel import Idempotency
from domain.pearl_app import PearlApp
from services.bus import (
    CONNECT_OPTIONS,
    WORKER_ACK_WAIT_S,
    WORKER_MAX_DELIVER,
    servers_of,
    worker_consumer,
)
from services.commands import ROUTES, Route, decode_body
from services.reports import ReportStore
from services.telemetry import span_from

log = logging.getLogger(__name__)
MAX_DELIVER = WORKER_MAX_DELIVER
ACK_WAIT_S = WORKER_ACK_WAIT_S
#: a transient failure is retried in place this long before the delivery is given back
TRANSIENT_RETRY_S = 60.0
#: the pauses between two tries of a command that failed transiently (doubling)
RETRY_FIRST_S = 0.05
RETRY_MAX_S = 1.0
#: each request to NATS made for a command (dead-letter publish) is bounded by this
BUS_TIMEOUT_S = 5.0
#: the DLQ keeps at most this much of a body (the rest is cut, and the cut is said)
DLQ_MAX_BODY = 512 * 1024
#: failures that mean "a server is away", not "this command is wrong"
TRANSIENT = (OperationalError, InterfaceError, OSError, TimeoutError, NatsError)
_decoder = msgspec.json.Decoder(CommandEnvelope)


@dataclass(frozen=True, slots=True)
class Outcome:
    """`ack`, `retry` (transient) or `dead` (to the DLQ with `reason`)."""

    action: str
    reason: str = ""
    code: str = ""


ACK = Outcome("ack")


@dataclass(frozen=True, slots=True)
class Decoded:
    """A routed, validated, authenticated command ready to run."""

    subject: str
    org: str
    route: Route
    principal: Principal
    cmd: Any
    idem: Idempotency


def _bearer(headers: dict[str, str]) -> str:
    value = headers.get("Authorization") or headers.get("authorization") or ""
    scheme, _, token = value.partition(" ")
    if scheme.lower() != "bearer" or not token:
        raise Unauthenticated("command has no 'Authorization: Bearer <key>' header")
    return token.strip()


class CommandProcessor:
    """Turns one bus message into one Application call; never raises for bad input."""

    def __init__(
        self,
        app: PearlApp,
        js: JetStreamContext | None,
        subjects: Subjects,
        reports: ReportStore | None = None,
        authenticate: Callable[[str], Principal] | None = None,
    ) -> None:
        self.app = app
        self.js = js
        self.subjects = subjects
        self.reports = reports
        self.authenticate = authenticate or app.authenticate

    def decode(self, subject: str, body: bytes, headers: dict[str, str]) -> Decoded | Outcome:
        """Route, validate and authenticate a command (blocking: run it in a thread). Nothing
        here raises for bad input: any failure that is not a server being away is a dead
        letter naming what was wrong."""
        try:
            return self._decode(subject, body, headers)
        except TRANSIENT:
            raise
        except RecursionError:
            return Outcome("dead", "malformed command envelope: nested too deeply", "invalid-input")
        except Exception as exc:
            return Outcome("dead", f"undecodable command: {exc!r}"[:500], "invalid-input")

    def _decode(self, subject: str, body: bytes, headers: dict[str, str]) -> Decoded | Outcome:
        try:
            org, aggregate, command = self.subjects.parse_command(subject)
        except ValueError as exc:
            return Outcome("dead", str(exc), "invalid-subject")
        route = ROUTES.get((aggregate, command))
        if route is None:
            return Outcome("dead", f"unknown command {aggregate}.{command}", "unknown-command")
        try:
            envelope = _decoder.decode(body)
        except (msgspec.ValidationError, msgspec.DecodeError) as exc:
            return Outcome("dead", f"malformed command envelope: {exc}", "invalid-input")
        try:
            principal = self.authenticate(_bearer(headers))
        except Unauthenticated as exc:
            self._deny(SYSTEM_ORG, "anonymous:bus", subject, exc)
            return Outcome("dead", exc.detail, exc.code)
        try:
            cmd = decode_body(route, envelope.data)
            idem = Idempotency(f"cmd:{envelope.id}", request_digest(subject, envelope.data))
        except PearlError as exc:
            return Outcome("dead", exc.detail, exc.code)
        return Decoded(subject, org, route, principal, cmd, idem)

    def run(self, decoded: Decoded, attachment: Any = None) -> Outcome:
        """Call the Application (blocking); map domain errors to DLQ or retry."""
        channel = current_channel.set("nats")
        try:
            result = decoded.route.handle(
                self.app, decoded.principal, decoded.org, decoded.cmd, decoded.idem, attachment
            )
        except ConcurrencyConflict as exc:
            return Outcome("retry", exc.detail, exc.code)
        except (Forbidden, CrossOrg) as exc:
            self._deny(decoded.principal.org, decoded.principal.actor, decoded.subject, exc)
            return Outcome("dead", exc.detail, exc.code)
        except PearlError as exc:
            return Outcome("dead", exc.detail, exc.code)
        finally:
            current_channel.reset(channel)
        log.info(
            "command applied",
            extra={
                "subject": decoded.subject,
                "org": decoded.org,
                "position": result.position,
                "replayed": result.replayed,
            },
        )
        return ACK

    def _deny(self, org: str, actor: str, subject: str, exc: PearlError) -> None:
        """A refused bus command is an audit event of the caller's org, like a refused request."""
        if getattr(exc, "recorded", False):  # the domain audited this refusal itself
            return
        code = "cross-org" if isinstance(exc, CrossOrg) else exc.code
        try:
            self.app.record_denial(org, actor, subject, subject, exc.detail, code, "nats")
        except Exception:  # a failed record must not turn a refusal into a retry loop
            log.exception("could not record an access denial")

    def execute(self, subject: str, body: bytes, headers: dict[str, str]) -> Outcome:
        """Decode and run a command that needs no asynchronous preparation."""
        decoded = self.decode(subject, body, headers)
        return decoded if isinstance(decoded, Outcome) else self.run(decoded)

    async def handle(self, subject: str, body: bytes, headers: dict[str, str]) -> Outcome:
        decoded = await asyncio.to_thread(self.decode, subject, body, headers)
        if isinstance(decoded, Outcome):
            return decoded
        attachment = None
        if decoded.route.prepare is not None:
            try:
                attachment = await decoded.route.prepare(self.reports, decoded.cmd)
            except PearlError as exc:
                return Outcome("dead", exc.detail, exc.code)
        try:
            return await asyncio.to_thread(self.run, decoded, attachment)
        finally:
            close = getattr(attachment, "close", None)
            if close is not None:
                close()

    async def process(self, msg: RawNatsMessage | Msg) -> None:
        """Handle one delivery to the end: applied (ack), dead-lettered (then ack), or given
        back (nak with a delay); never raises, so FastStream never leaves a delivery hanging."""
        raw = msg.raw_message if isinstance(msg, RawNatsMessage) else msg
        try:
            headers = {str(k): str(v) for k, v in (raw.headers or {}).items()}
        except Exception:  # a header block nats-py could not make sense of
            headers = {}
        deliveries = raw.metadata.num_delivered if raw.metadata else 1
        seq = raw.metadata.sequence.stream if raw.metadata else 0
        heartbeat = asyncio.create_task(_in_progress(raw))
        try:
            if deliveries > MAX_DELIVER:  # earlier deliveries ended without any outcome
                outcome = Outcome(
                    "dead",
                    f"delivered {deliveries} times without an outcome (did it stop the worker?)",
                    "undeliverable",
                )
            else:
                with span_from(headers, "worker.command", subject=raw.subject):
                    outcome = await self._attempt(raw.subject, raw.data, headers)
            if outcome.action == "retry" and deliveries >= MAX_DELIVER:
                outcome = Outcome(
                    "dead", f"gave up after {deliveries} attempts: {outcome.reason}", outcome.code
                )
            if outcome.action == "dead":
                await self.dead_letter(raw.subject, raw.data, headers, outcome, seq)
            if outcome.action == "retry":
                await raw.nak(delay=min(0.2 * deliveries, RETRY_MAX_S))
            else:
                await raw.ack()
        except asyncio.CancelledError:
            raise
        except Exception:  # NATS away while dead-lettering or acking: redelivered later
            log.exception("command delivery left for redelivery", extra={"stream_seq": seq})
        finally:
            heartbeat.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await heartbeat

    async def _attempt(self, subject: str, body: bytes, headers: dict[str, str]) -> Outcome:
        """The command's outcome; transient failures are retried in place for a while."""
        loop = asyncio.get_running_loop()
        give_up_at = loop.time() + TRANSIENT_RETRY_S
        pause = RETRY_FIRST_S
        while True:
            try:
                outcome = await self.handle(subject, body, headers)
            except DataError as exc:  # PostgreSQL cannot hold what the command carries
                return Outcome("dead", f"the command cannot be stored: {exc}", "invalid-input")
            except TRANSIENT as exc:
                outcome = Outcome("retry", repr(exc), "unavailable")
                transient = True
            except Exception as exc:  # a bug must not kill the consumer nor lose the command
                log.exception("command failed unexpectedly")
                return Outcome("retry", repr(exc), "internal-error")
            else:
                transient = outcome.code == "concurrency-conflict"
            if outcome.action != "retry" or not transient or loop.time() >= give_up_at:
                return outcome
            if pause == RETRY_FIRST_S:  # once per command, not once per try
                log.warning(
                    "command failed transiently; retrying",
                    extra={"subject": subject, "reason": outcome.reason[:200]},
                )
            await asyncio.sleep(pause)
            pause = min(pause * 2, RETRY_MAX_S)

    async def dead_letter(
        self, subject: str, body: bytes, headers: dict[str, str], outcome: Outcome, seq: int
    ) -> None:
        """Park the message in the DLQ with the reason; credentials are never copied. A body
        too big for the DLQ is cut (and `Pearl-Dlq-Truncated` says how long it was)."""
        kept = {k: v for k, v in headers.items() if k.lower() != "authorization"}
        kept.update(
            {
                "Pearl-Dlq-Reason": _header_text(escape_controls(outcome.reason), 1000),
                "Pearl-Dlq-Code": outcome.code,
                "Pearl-Original-Subject": _header_text(subject, 1000),
                "Nats-Msg-Id": f"dlq-{self.subjects.root}-{seq}",
            }
        )
        if self.js is None:
            raise RuntimeError("no JetStream connection for the dead-letter stream")
        if len(body) > DLQ_MAX_BODY:
            kept["Pearl-Dlq-Truncated"] = str(len(body))
            body = body[:DLQ_MAX_BODY]
        target = (
            self.subjects.dlq(subject)
            if _is_token_safe(subject)
            else self.subjects.dlq(f"{self.subjects.root}.cmd.invalid")
        )
        try:
            await self.js.publish(target, body, headers=kept, timeout=BUS_TIMEOUT_S)
        except MaxPayloadError:  # headers and body together still too big: keep the headers
            kept["Pearl-Dlq-Truncated"] = kept.get("Pearl-Dlq-Truncated", str(len(body)))
            await self.js.publish(target, b"", headers=kept, timeout=BUS_TIMEOUT_S)
        log.warning(
            "command dead-lettered",
            extra={"subject": subject, "code": outcome.code, "reason": outcome.reason[:200]},
        )


def _header_text(value: str, limit: int) -> str:
    """One line of printable text for a NATS header value."""
    text = "".join(ch if ch.isprintable() else " " for ch in value[:limit])
    return text.strip() or "-"


def _is_token_safe(subject: str) -> bool:
    return all(part and part.isprintable() and " " not in part for part in subject.split("."))


async def _in_progress(raw: Msg) -> None:
    """Tell JetStream the command is still being worked on, every ACK_WAIT_S / 3."""
    while True:
        await asyncio.sleep(ACK_WAIT_S / 3)
        try:
            await asyncio.wait_for(raw.in_progress(), BUS_TIMEOUT_S)
        except (NatsError, TimeoutError, OSError):
            log.warning("could not extend a command's ack wait", extra={"subject": raw.subject})


async def _raw_message(msg: Msg) -> StreamMessage[Msg]:
    """FastStream's parser, minus anything that could fail on what a sender chose."""
    return RawNatsMessage(raw_message=msg, body=msg.data, reply_to="", headers={})


async def _raw_body(msg: StreamMessage[Any]) -> bytes:
    """FastStream's decoder: the bytes, undecoded (`CommandProcessor.decode` decodes them)."""
    return bytes(msg.body)


def create_worker(
    app: PearlApp,
    nats_url: str,
    subjects: Subjects,
    batch_size: int = 64,
    authenticate: Callable[[str], Principal] | None = None,
) -> tuple[FastStream, NatsBroker]:
    """Build (not start) the FastStream app and broker of the command worker."""
    broker = NatsBroker(
        servers_of(nats_url), logger=log, log_level=logging.DEBUG, **CONNECT_OPTIONS
    )
    holder: dict[str, CommandProcessor] = {}
    config = worker_consumer(subjects)

    @broker.subscriber(
        subjects.all_commands,
        stream=JStream(name=subjects.commands_stream, declare=False),
        durable=config.durable_name,
        pull_sub=PullSub(batch_size=batch_size, timeout=1.0),
        ack_policy=AckPolicy.MANUAL,
        config=config,
        parser=_raw_message,
        decoder=_raw_body,
    )
    async def handle_command(msg: NatsMessage) -> None:
        processor = holder.get("p")
        if processor is None:
            js = broker.connection.jetstream()
            reports = ReportStore(js, subjects)
            processor = holder["p"] = CommandProcessor(app, js, subjects, reports, authenticate)
        await processor.process(msg)

    return FastStream(broker), broker
