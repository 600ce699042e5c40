"""Gate evaluation as a service: read the inputs from a consistent read-model snapshot, let
the Application evaluate and record them, and replay a recorded decision from the store.

The snapshot must include the event that triggered the evaluation (its position); when the
read models have not reached it yet, nothing is recorded (`NotReady`) and the caller retries,
so a trigger is never marked handled by an evaluation that did not see it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from datetime import datetime
from typing import Any
from uuid import UUID

import msgspec

from contracts.governance import RequestPromotion
from domain.authz import Principal
from domain.errors import ConcurrencyConflict, InvalidInput, NotFound, NotReady
from domain.gate import explain
from domain.gate.facts import (
    approval_fact,
    exception_fact,
    previous_environment,
    scan_fact,
    test_fact,
)
from domain.gate.inputs import Decision, GateInputs, RuleResult
from domain.governance_app import GATEKEEPER, GateOutcome, ReplayIds, build_inputs
from domain.kernel import CommandResult, Idempotency
from domain.pearl_app import PearlApp
from domain.promotion import Promotion
from projections import queries
from projections.gate_snapshot import GateSnapshot, OpenFindings, read_snapshot
from projections.queries import Pool

log = logging.getLogger(__name__)


def inputs_from_snapshot(promotion: Promotion, snap: GateSnapshot, now: datetime) -> GateInputs:
    previous = None
    if promotion.from_environment is not None:
        row = snap.previous or {}
        digest = promotion.version_digest
        previous = previous_environment(
            promotion.from_environment,
            row.get("live_since") if row.get("current_digest") == digest else None,
            digest in (row.get("failed_digests") or []),
        )
    return build_inputs(
        promotion,
        snap.profile or {},
        now.isoformat(),
        snap.findings,
        (
            exception_fact(
                r["id"],
                r["environment"],
                r["finding_ids"],
                r["rule_id"],
                r["cwe"],
                r["expires_at"],
                r["approved_by"] or "",
            )
            for r in snap.exceptions
        ),
        (
            scan_fact(
                r["id"], r["tool"], r["format"], r["full_scan"], r["commit_sha"], r["submitted_at"]
            )
            for r in snap.scans
        ),
        (
            test_fact(
                r["id"],
                r["suite"],
                r["passed"],
                r["failed"],
                r["skipped"],
                r["coverage"],
                r["submitted_at"],
            )
            for r in snap.tests
        ),
        (
            approval_fact(
                r["id"],
                r["status"],
                r["version_digest"],
                r["requested_by"],
                r["expires_at"],
                r["decisions"],
            )
            for r in snap.approvals
        ),
        previous,
    )


class GateService:
    """Evaluates promotions' gates for the API, the CLI and the gatekeeper."""

    def __init__(self, app: PearlApp, pool: Pool, wait_seconds: float = 5.0) -> None:
        self.app = app
        self.pool = pool
        self.wait_seconds = wait_seconds
        self.open_findings = OpenFindings()

    async def snapshot_inputs(self, promotion: Promotion) -> tuple[GateInputs, int]:
        now = self.app.clock()
        snap = await read_snapshot(
            self.pool,
            promotion.org,
            project_id=promotion.project_id,
            promotion_id=str(promotion.id),
            environment=promotion.to_environment,
            from_environment=promotion.from_environment,
            commit=promotion.commit,
            now=now,
            findings=self.open_findings,
        )
        return inputs_from_snapshot(promotion, snap, now), snap.position

    async def evaluate(
        self,
        promotion_id: UUID,
        trigger: str,
        trigger_position: int,
        actor: str = GATEKEEPER,
        idem: Idempotency | None = None,
    ) -> GateOutcome:
        """Evaluate once the read models include `trigger_position`; retry a lost race."""
        for attempt in range(3):
            promotion = await asyncio.to_thread(self.app.promotion_for_gate, promotion_id)
            if not promotion.is_open:
                return GateOutcome(None, None, None)
            inputs, position = await self.snapshot_inputs(promotion)
            if position < trigger_position:  # the read models lag: wait (bounded), read again
                await queries.wait_for_position(self.pool, trigger_position, self.wait_seconds)
                inputs, position = await self.snapshot_inputs(promotion)
            if position < trigger_position:
                raise NotReady(
                    f"read models are at {position}, the gate needs {trigger_position}; retry"
                )
            try:
                return await asyncio.to_thread(
                    self.app.record_gate,
                    promotion_id,
                    inputs,
                    position,
                    trigger,
                    trigger_position,
                    actor,
                    idem,
                )
            except ConcurrencyConflict:
                log.info(
                    "gate evaluation raced another change; evaluating again",
                    extra={"promotion_id": str(promotion_id), "attempt": attempt + 1},
                )
        raise ConcurrencyConflict("the promotion kept changing; evaluate it again")

    async def evaluate_after(self, promotion_id: UUID, result: CommandResult) -> dict[str, Any]:
        """Evaluate right after a command (the gatekeeper would too); if the gatekeeper was
        first, its decision is the answer; a lagging read side leaves it to the gatekeeper."""
        with contextlib.suppress(NotReady):
            outcome = await self.evaluate(promotion_id, "command", result.position, GATEKEEPER)
            if outcome.decision is not None and outcome.result is not None:
                return {
                    "decision_id": outcome.decision_id,
                    "result": outcome.decision.result,
                    "position": outcome.result.position,
                }
        promotion = await asyncio.to_thread(self.app.promotion_for_gate, promotion_id)
        latest = promotion.latest
        if latest is not None and promotion.last_trigger >= result.position:
            return {"decision_id": latest["decision_id"], "result": latest["result"]}
        return {}

    async def request_promotion(
        self,
        principal: Principal,
        project_id: UUID,
        cmd: RequestPromotion,
        idem: Idempotency | None = None,
    ) -> CommandResult:
        """Open a promotion and evaluate its gate at once (`gate` in the answer; the
        gatekeeper evaluates it again whenever its inputs change)."""
        result = await asyncio.to_thread(
            self.app.request_promotion, principal, project_id, cmd, idem
        )
        if result.replayed:
            return with_gate(result, {})
        return with_gate(result, await self.evaluate_after(UUID(result.ids["id"]), result))

    async def evaluate_now(
        self, principal: Principal, promotion_id: UUID, idem: Idempotency | None = None
    ) -> CommandResult:
        """A caller's request to evaluate the gate again now (a new decision event); the same
        idempotency key again answers the first decision."""
        promotion = await asyncio.to_thread(self.app.authorize_evaluation, principal, promotion_id)
        replay = await asyncio.to_thread(self.app.replayed, promotion.org, idem)
        if replay is not None:
            return replay
        position = self.app.position
        outcome = await self.evaluate(promotion_id, "manual", position, principal.actor, idem)
        if outcome.result is None or outcome.decision is None:
            raise InvalidInput(f"promotion {promotion_id} is closed; it is not evaluated again")
        return outcome.result

    async def explanation(
        self, principal: Principal, promotion_id: UUID, decision: UUID | None = None
    ) -> dict[str, Any]:
        """Why the gate decided what it did (the latest decision, or `decision`)."""
        promotion = await asyncio.to_thread(self.app.get_promotion, principal, promotion_id)
        recorded = promotion.evaluation(decision) if decision else promotion.latest
        if recorded is None:
            raise NotFound("no gate decision recorded for this promotion yet")
        result = decision_of(recorded)
        return {
            "promotion_id": str(promotion_id),
            "decision_id": recorded["decision_id"],
            "status": promotion.status,
            "result": result.result,
            "inputs_digest": result.inputs_digest,
            "policy": recorded["policy"],
            "as_of_position": recorded["as_of_position"],
            "failed": [msgspec.to_builtins(r) for r in result.rules if r.status == "failed"],
            "text": explain(result),
        }

    async def replay(self, promotion_id: UUID, decision_id: str, org: str) -> dict[str, Any]:
        """`pearl replay decision`: rebuild the inputs from the event store as of the decision."""
        promotion = await asyncio.to_thread(self.app.promotion_for_gate, promotion_id)
        pid = promotion.project_id

        async def ids(kind: str) -> list[UUID]:
            return [UUID(i) for i in await queries.aggregate_ids(self.pool, org, pid, kind)]

        replay_ids = ReplayIds(
            findings=await ids("finding"),
            exceptions=await ids("risk_exception"),
            scans=await ids("scan_report"),
            tests=await ids("test_run"),
        )
        return await asyncio.to_thread(
            self.app.replay_decision, promotion_id, decision_id, replay_ids
        )


def with_gate(result: CommandResult, gate: dict[str, Any]) -> CommandResult:
    """A command's answer with the gate decision taken right after it (`gate`)."""
    position = max(result.position, int(gate.get("position", 0)))
    ids = {**result.ids, "gate": {k: v for k, v in gate.items() if k != "position"} or None}
    return CommandResult(ids, position, result.replayed)


def decision_of(row: dict[str, Any]) -> Decision:
    """A recorded gate evaluation as the Decision it was."""
    return Decision(
        result=row["result"],
        rules=msgspec.convert(row["rules"], list[RuleResult]),
        inputs_digest=row["inputs_digest"],
        evaluated_at=str(row["evaluated_at"]),
    )
