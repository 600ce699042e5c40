"""The gatekeeper: re-evaluates open promotions whenever something their gate reads changes,
and judges completed task packets by each new full scan (verified, or reopened).

A durable JetStream pull consumer over every event. Each fetched batch is reduced to the
projects it touches (a scan, test results, an exception or approval decided or expired, a
triaged finding, a policy or profile change, a release in the previous environment); every
open promotion of those projects is evaluated once, with the batch's last position as its
trigger. `record_gate` records nothing for a trigger a promotion already saw, so redelivery
after a crash and several gatekeepers never double a decision. When the read models have not
reached the trigger yet, the batch is nak'ed and comes back.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass, field
from typing import Any
from uuid import UUID

import msgspec
from nats.errors import Error as NatsError
from nats.errors import TimeoutError as NatsTimeoutError
from nats.js import JetStreamContext
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy

from contracts.envelope import EventEnvelope, event_type
from contracts.subjects import Subjects
from domain.errors import NotReady, PearlError
from domain.gate_policy import GatePolicy
from domain.pearl_app import PearlApp
from projections import governance_queries as gq
from projections import task_queries
from projections.queries import Pool, project_of, wait_for_position
from services.gate import GateService

log = logging.getLogger(__name__)
_decoder = msgspec.json.Decoder(EventEnvelope)

#: Events that change what an open promotion's gate would see.
TRIGGERS = frozenset(
    {
        event_type("scan_report", "submitted"),
        event_type("scan_report", "submitted", 2),
        event_type("test_run", "submitted"),
        event_type("risk_exception", "approved"),
        event_type("risk_exception", "revoked"),
        event_type("risk_exception", "expired"),
        event_type("approval_request", "decided"),
        event_type("approval_request", "expired"),
        event_type("approval_request", "voided"),
        event_type("finding", "triaged"),
        event_type("finding", "reopened"),
        event_type("finding", "sla_breached"),
        event_type("gate_policy", "revised"),
        event_type("project", "profile_set"),
        event_type("deploy_environment", "promoted"),
        event_type("deploy_environment", "rolled_back"),
        event_type("promotion", "requested"),
    }
)
#: A finding recorded by hand (not by a scan, whose report event is the trigger).
MANUAL_FINDING = (event_type("finding", "recorded"), event_type("finding", "recorded", 2))


@dataclass
class Work:
    """What one batch asks for: projects to re-evaluate, and promotions named directly."""

    position: int = 0
    projects: dict[str, str] = field(default_factory=dict)  # project id → trigger type
    promotions: dict[str, str] = field(default_factory=dict)
    policies: set[str] = field(default_factory=set)  # gate policy ids to resolve
    full_scans: dict[str, str] = field(default_factory=dict)  # scan id → project id


def plan(envelopes: list[EventEnvelope]) -> Work:
    """Reduce a batch of events to the re-evaluations it calls for (pure)."""
    work = Work()
    for env in envelopes:
        data = env.data
        manual = env.type in MANUAL_FINDING and not data.get("scan_id")
        if env.type not in TRIGGERS and not manual:
            continue
        work.position = max(work.position, env.position)
        if env.aggregate == "scan_report" and data.get("full"):
            work.full_scans[env.aggregateid] = str(data["project_id"])
        if env.type == event_type("promotion", "requested"):
            work.promotions[env.aggregateid] = env.type
        elif env.type == event_type("gate_policy", "revised"):
            work.policies.add(env.aggregateid)
        elif env.aggregate == "project":
            work.projects[env.aggregateid] = env.type
        elif data.get("project_id"):
            work.projects[str(data["project_id"])] = env.type
        else:
            # e.g. an approval decided: its project is resolved through the scope index
            work.projects.setdefault(f"aggregate:{env.aggregateid}", env.type)
    return work


class Gatekeeper:
    def __init__(
        self,
        app: PearlApp,
        pool: Pool,
        js: JetStreamContext,
        subjects: Subjects,
        batch: int = 256,
    ) -> None:
        self.app = app
        self.pool = pool
        self.js = js
        self.subjects = subjects
        self.batch = batch
        self.gate = GateService(app, pool)
        self.durable = f"{subjects.root}-gatekeeper"

    async def subscribe(self) -> Any:
        config = ConsumerConfig(
            durable_name=self.durable,
            ack_policy=AckPolicy.EXPLICIT,
            deliver_policy=DeliverPolicy.ALL,
            ack_wait=60,
            max_ack_pending=10_000,
        )
        return await self.js.pull_subscribe(
            self.subjects.all_events,
            durable=self.durable,
            stream=self.subjects.events_stream,
            config=config,
        )

    async def run(self, stop: asyncio.Event) -> None:
        sub = await self.subscribe()
        while not stop.is_set():
            try:
                msgs = await sub.fetch(self.batch, timeout=1.0)
            except (NatsTimeoutError, TimeoutError):
                continue
            except NatsError as exc:  # e.g. NATS restarted and the consumer is being recovered
                log.warning(
                    "gatekeeper cannot fetch; subscribing again", extra={"error": repr(exc)}
                )
                await asyncio.sleep(0.5)
                with contextlib.suppress(NatsError, TimeoutError):
                    sub = await asyncio.wait_for(self.subscribe(), 5.0)
                continue
            envelopes = []
            for msg in msgs:
                with contextlib.suppress(msgspec.ValidationError, msgspec.DecodeError):
                    envelopes.append(_decoder.decode(msg.data))
            try:
                evaluated = await self.handle(envelopes)
            except NotReady:
                for msg in msgs:
                    await msg.nak(delay=1.0)
                continue
            except Exception:
                log.exception("gatekeeper batch failed; it will be redelivered")
                for msg in msgs:
                    await msg.nak(delay=2.0)
                continue
            for msg in msgs:
                await msg.ack()
            if evaluated:
                log.info("gates re-evaluated", extra={"count": evaluated})

    async def handle(self, envelopes: list[EventEnvelope]) -> int:
        """Re-evaluate what a batch calls for; returns how many decisions were recorded."""
        work = plan(envelopes)
        if work.position == 0:
            return 0
        if not await wait_for_position(self.pool, work.position, 10.0):
            raise NotReady(f"read models have not reached {work.position}")
        await self.verify_tasks(work.full_scans)
        targets: dict[str, str] = dict(work.promotions)
        for key, trigger in work.projects.items():
            project_id = await self._project_of(key)
            if project_id is None:
                continue
            for promotion_id in await gq.open_promotions(self.pool, project_id):
                targets.setdefault(str(promotion_id), trigger)
        for policy_id in work.policies:
            policy = await asyncio.to_thread(self.app.load, GatePolicy, UUID(policy_id), "policy")
            if policy.project_id is not None:
                ids = await gq.open_promotions(self.pool, policy.project_id)
            else:
                ids = await gq.open_promotions_in_org_env(self.pool, policy.org, policy.environment)
            for promotion_id in ids:
                targets.setdefault(str(promotion_id), event_type("gate_policy", "revised"))
        recorded = 0
        for promotion_id, trigger in sorted(targets.items()):
            try:
                outcome = await self.gate.evaluate(UUID(promotion_id), trigger, work.position)
            except NotReady:
                raise
            except PearlError as exc:
                log.warning(
                    "promotion not evaluated",
                    extra={"promotion_id": promotion_id, "reason": exc.detail},
                )
                continue
            recorded += outcome.decision is not None
        return recorded

    async def verify_tasks(self, full_scans: dict[str, str]) -> None:
        """Judge the completed task packets of each project by its new full scans."""
        for scan_id, project_id in sorted(full_scans.items()):
            ids = await task_queries.completed_tasks(self.pool, project_id)
            if not ids:
                continue
            try:
                counts = await asyncio.to_thread(
                    self.app.verify_tasks, UUID(scan_id), [UUID(i) for i in ids]
                )
            except PearlError as exc:
                log.warning("tasks not verified", extra={"scan_id": scan_id, "reason": exc.detail})
                continue
            if any(counts.values()):
                log.info("task packets judged", extra={"scan_id": scan_id, **counts})

    async def _project_of(self, key: str) -> str | None:
        if not key.startswith("aggregate:"):
            return key
        return await project_of(self.pool, key.removeprefix("aggregate:"))


async def run_gatekeeper(settings: Any) -> None:
    """The `gatekeeper` process."""
    from services.bus import connect
    from services.runtime import read_pool, stop_event, subjects_of

    nats_url, database_url = settings.require_urls()
    app = PearlApp(env=settings.event_store_env())
    pool = read_pool(database_url, 2)
    await pool.open()
    nc = await connect(nats_url, "pearl-gatekeeper")
    try:
        gatekeeper = Gatekeeper(app, pool, nc.jetstream(), subjects_of(settings))
        await gatekeeper.run(stop_event())
    finally:
        await nc.close()
        await pool.close()
