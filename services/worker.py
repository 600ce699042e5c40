"""The command worker: FastStream subscriber on `<root>.cmd.>` calling the Application.

Each command is processed exactly once: its envelope id is its idempotency key, recorded in the
same transaction as its events. A command that can never succeed (malformed, unknown, refused)
goes to the dead-letter stream with the reason and is acked; a transient failure is retried.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import msgspec
from faststream import FastStream
from faststream.middlewares import AckPolicy
from faststream.nats import JStream, NatsBroker, PullSub
from faststream.nats.annotations import NatsMessage
from faststream.nats.message import NatsMessage as RawNatsMessage
from nats.js import JetStreamContext
from nats.js.api import ConsumerConfig
from psycopg import Error as PsycopgError

from contracts.envelope import CommandEnvelope
from contracts.subjects import Subjects
from domain.authz import SYSTEM_ORG, Principal
from domain.base import current_channel
from domain.errors import ConcurrencyConflict, CrossOrg, Forbidden, PearlError, Unauthenticated
from domain.idempotency import request_digest
from domain.pearl_app import Idempotency, PearlApp
from services.bus import servers_of
from services.commands import ROUTES, Route, decode_body
from services.reports import ReportStore
from services.telemetry import span_from

log = logging.getLogger(__name__)
MAX_DELIVER = 10
CONFLICT_RETRIES = 8
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
        """Route, validate and authenticate a command (blocking: run it in a thread)."""
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
        except PearlError as exc:
            return Outcome("dead", exc.detail, exc.code)
        idem = Idempotency(f"cmd:{envelope.id}", request_digest(subject, envelope.data))
        return Decoded(subject, org, route, principal, cmd, idem)

    def run(self, decoded: Decoded, attachment: Any = None) -> Outcome:
        """Call the Application (blocking); map domain errors to DLQ or retry."""
        channel = current_channel.set("nats")
        try:
            result = self._handle(decoded, attachment)
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

    def _handle(self, decoded: Decoded, attachment: Any) -> Any:
        """The Application call; a concurrency conflict (another change to the same aggregate
        was saved first) is retried at once with the aggregate reloaded, as an HTTP client
        retries a 409, so commands racing for one aggregate are not dead-lettered after
        `MAX_DELIVER` redeliveries."""
        for attempt in range(CONFLICT_RETRIES):
            try:
                return decoded.route.handle(
                    self.app, decoded.principal, decoded.org, decoded.cmd, decoded.idem, attachment
                )
            except ConcurrencyConflict:
                if attempt == CONFLICT_RETRIES - 1:
                    raise
                time.sleep(random.uniform(0.0, 0.02 * (attempt + 1)))  # noqa: S311 - jitter
        raise AssertionError("unreachable")

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

    async def process(self, msg: RawNatsMessage) -> None:
        raw = msg.raw_message
        headers = dict(raw.headers or {})
        with span_from(headers, "worker.command", subject=raw.subject):
            try:
                outcome = await self.handle(raw.subject, raw.data, headers)
            except (PsycopgError, OSError, RuntimeError) as exc:
                log.warning("command failed transiently", extra={"error": str(exc)})
                outcome = Outcome("retry", str(exc), "unavailable")
            except Exception as exc:  # a bug must not kill the consumer nor lose the command
                log.exception("command failed unexpectedly")
                outcome = Outcome("retry", str(exc), "unavailable")
        deliveries = raw.metadata.num_delivered if raw.metadata else 1
        if outcome.action == "retry" and deliveries >= MAX_DELIVER:
            outcome = Outcome(
                "dead", f"gave up after {deliveries} attempts: {outcome.reason}", outcome.code
            )
        if outcome.action == "dead":
            await self.dead_letter(
                raw.subject,
                raw.data,
                headers,
                outcome,
                raw.metadata.sequence.stream if raw.metadata else 0,
            )
        if outcome.action == "retry":
            await msg.nack(delay=min(0.2 * deliveries, 5.0))
        else:
            await msg.ack()

    async def dead_letter(
        self, subject: str, body: bytes, headers: dict[str, str], outcome: Outcome, seq: int
    ) -> None:
        """Park the message in the DLQ with the reason; credentials are never copied."""
        kept = {k: v for k, v in headers.items() if k.lower() != "authorization"}
        kept.update(
            {
                "Pearl-Dlq-Reason": outcome.reason[:1000].replace("\n", " ").replace("\r", " "),
                "Pearl-Dlq-Code": outcome.code,
                "Pearl-Original-Subject": subject,
                "Nats-Msg-Id": f"dlq-{self.subjects.root}-{seq}",
            }
        )
        if self.js is None:
            raise RuntimeError("no JetStream connection for the dead-letter stream")
        await self.js.publish(self.subjects.dlq(subject), body, headers=kept)
        log.warning(
            "command dead-lettered",
            extra={"subject": subject, "code": outcome.code, "reason": outcome.reason[:200]},
        )


def create_worker(
    app: PearlApp,
    nats_url: str,
    subjects: Subjects,
    batch_size: int = 64,
    authenticate: Callable[[str], Principal] | None = None,
) -> tuple[FastStream, NatsBroker]:
    """Build (not start) the FastStream app and broker of the command worker."""
    broker = NatsBroker(
        servers_of(nats_url), max_reconnect_attempts=-1, logger=log, log_level=logging.DEBUG
    )
    holder: dict[str, CommandProcessor] = {}

    @broker.subscriber(
        subjects.all_commands,
        stream=JStream(name=subjects.commands_stream, declare=False),
        durable=f"{subjects.root}-worker",
        pull_sub=PullSub(batch_size=batch_size, timeout=1.0),
        ack_policy=AckPolicy.MANUAL,
        config=ConsumerConfig(ack_wait=60, max_ack_pending=1000),
    )
    async def handle_command(msg: NatsMessage) -> None:
        processor = holder.get("p")
        if processor is None:
            js = broker.connection.jetstream()
            reports = ReportStore(js, subjects)
            processor = holder["p"] = CommandProcessor(app, js, subjects, reports, authenticate)
        await processor.process(msg)

    return FastStream(broker), broker
