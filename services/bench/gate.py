"""`pearl bench gate`: gate evaluation latency on a project with 10,000 open findings,
200 approved exceptions and a 20-rule policy (target p99 < 50 ms)."""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import platform
import statistics
import time
import uuid
from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import Any
from urllib.parse import urlparse
from uuid import UUID

import psycopg
from psycopg import sql

from contracts.commands import CreateOrg, CreateProject, IssueApiKey
from contracts.governance import (
    DecideException,
    RegisterVersion,
    RequestException,
    RequestPromotion,
    SetPolicy,
    SetProfile,
    SubmitTestResults,
)
from domain import gate as domain_gate
from domain.governance_app import effective_policy
from domain.ingest import ScanMeta
from domain.pearl_app import PearlApp
from domain.project import Project
from domain.scanners import parse_report
from projections import queries
from services.bench import ceilings
from services.bench.replay import drop_streams
from services.gate import GateService
from services.rebuild import rebuild_read_models
from services.runtime import migrate, read_pool
from services.settings import Settings, event_store_env

COMMIT = "0123456789abcdef0123456789abcdef01234567"
RULES = 50


def sarif_report(results: int) -> bytes:
    """`results` distinct SARIF results over 50 rules with severities and CWE tags."""
    rules = [
        {
            "id": f"bench.rule.{r}",
            "shortDescription": {"text": f"Rule {r}"},
            "properties": {
                "security-severity": str(1 + r % 10),
                "tags": ["security", f"external/cwe/cwe-{20 + r % 25}"],
            },
        }
        for r in range(RULES)
    ]
    out = [
        {
            "ruleId": f"bench.rule.{i % RULES}",
            "level": "warning",
            "message": {"text": f"Finding {i}"},
            "locations": [
                {
                    "physicalLocation": {
                        "artifactLocation": {"uri": f"src/pkg{i % 40}/module_{i % 2000}.py"},
                        "region": {"startLine": 10 + i % 500},
                    }
                }
            ],
            "partialFingerprints": {"primaryLocationLineHash": f"{i:016x}"},
        }
        for i in range(results)
    ]
    log = {
        "version": "2.1.0",
        "runs": [
            {
                "tool": {"driver": {"name": "BenchScanner", "version": "1.0", "rules": rules}},
                "results": out,
            }
        ],
    }
    return json.dumps(log).encode()


def policy_document() -> dict[str, Any]:
    """20 rules mixing every kind."""
    rules: list[dict[str, Any]] = []
    for sev, limit in (("critical", 0), ("high", 10), ("medium", 100), ("low", 1000)):
        rules.append({"id": f"max-{sev}", "kind": "max_findings", "severity": sev, "max": limit})
        rules.append(
            {
                "id": f"max-{sev}-overdue",
                "kind": "max_findings",
                "severity": sev,
                "max": limit,
                "overdue_only": True,
            }
        )
    rules += [
        {"id": "max-info", "kind": "max_findings", "severity": "info", "max": 5000},
        {
            "id": "max-high-exposed",
            "kind": "max_findings",
            "severity": "high",
            "max": 5,
            "when": {"internet_facing": True},
        },
        {"id": "scans", "kind": "required_scans", "scanners": ["BenchScanner"]},
        {"id": "no-secrets", "kind": "no_secrets"},
        {"id": "tests", "kind": "tests", "min_pass_rate": 0.95, "min_coverage": 0.8},
        {"id": "approvals", "kind": "approvals", "count": 2, "roles": ["approver"]},
        {"id": "sbom", "kind": "sbom"},
        {"id": "soak", "kind": "soak", "hours": 1},
        {
            "id": "freeze",
            "kind": "freeze",
            "windows": [
                {"start": "2020-12-20T00:00:00Z", "end": "2021-01-02T00:00:00Z"},
                {"days": ["sat", "sun"], "from": "00:00", "to": "23:59"},
            ],
        },
        {"id": "expr-critical", "kind": "expression", "expr": "findings.critical == 0"},
        {
            "id": "expr-exposed",
            "kind": "expression",
            "expr": "!profile.internet_facing || findings.high + findings.critical < 50",
        },
        {
            "id": "expr-total",
            "kind": "expression",
            "expr": "findings.total < 20000 && tests.pass_rate >= 0.9",
        },
    ]
    assert len(rules) == 20
    return {"rules": rules}


def _stats(samples: list[float]) -> dict[str, float]:
    ordered = sorted(samples)
    p99 = ordered[min(len(ordered) - 1, round(0.99 * (len(ordered) - 1)))]
    return {
        "p50_ms": round(statistics.median(ordered) * 1000, 2),
        "p99_ms": round(p99 * 1000, 2),
        "max_ms": round(ordered[-1] * 1000, 2),
        "per_s": round(len(ordered) / sum(ordered), 1),
    }


async def _timed(runs: int, call: Callable[[], Awaitable[Any]]) -> list[float]:
    await call()  # warm-up
    samples = []
    for _ in range(runs):
        start = time.perf_counter()
        await call()
        samples.append(time.perf_counter() - start)
    return samples


def _key(app: PearlApp, admin: Any, org: str, name: str, role: str) -> Any:
    token = app.issue_api_key(admin, org, IssueApiKey(name=name, roles=[role])).secret["token"]  # type: ignore[list-item]
    return app.authenticate(token)


def _fill_findings(app: PearlApp, findings: int) -> tuple[str, UUID, dict[str, Any]]:
    admin = app.authenticate(app.bootstrap_admin_key("bench"))
    org = f"gate-{uuid.uuid4().hex[:6]}"
    app.create_org(admin, CreateOrg(slug=org, name="Gate"))
    project = UUID(app.create_project(admin, org, CreateProject(slug="p", name="P")).ids["id"])
    app.set_profile(admin, project, SetProfile(criticality="high", internet_facing=True))
    body = sarif_report(findings)
    report = parse_report(body)
    meta = ScanMeta(
        digest="sha256:" + hashlib.sha256(body).hexdigest(), size=len(body), commit=COMMIT
    )
    app.submit_scan(admin, project, report, meta)
    return org, project, {"admin": admin, "report_bytes": len(body)}


def _fill_governance(
    app: PearlApp,
    org: str,
    project: UUID,
    admin: Any,
    finding_ids: list[str],
    exceptions: int,
) -> UUID:
    """Exceptions, the staging policy, a version with tests; returns the dev promotion."""
    requester = _key(app, admin, org, "requester", "operator")
    approver = _key(app, admin, org, "approver", "approver")
    expires = app.clock() + timedelta(days=30)
    for i in range(exceptions):
        kind = i % 4
        cmd = RequestException(
            rule_id=f"bench.rule.{i % RULES}" if kind == 0 else None,
            cwe=f"CWE-{20 + i % 25}" if kind == 1 else None,
            finding_ids=finding_ids[i * 5 : i * 5 + 5] if kind >= 2 else [],
            environment="staging" if i % 2 else None,
            justification="accepted for the gate benchmark",
            expires_at=expires,
        )
        eid = UUID(app.request_exception(requester, project, cmd).ids["id"])
        app.decide_exception(approver, eid, DecideException(decision="approve"))
    app.set_policy(
        admin, org, project, "staging", SetPolicy(policy=policy_document(), reason="bench")
    )
    app.register_version(admin, project, RegisterVersion(version="1.0.0", commit=COMMIT))
    app.submit_test_results(
        admin, project, SubmitTestResults(commit=COMMIT, passed=990, failed=10, coverage=0.85)
    )
    result = app.request_promotion(admin, project, RequestPromotion(version="1.0.0", to="dev"))
    return UUID(result.ids["id"])


def _max_position(app: PearlApp) -> int:
    return app.position


async def _measure(
    app: PearlApp, settings: Settings, project: UUID, dev: UUID, admin: Any, runs: int
) -> dict[str, Any]:
    assert settings.database_url is not None
    pool = read_pool(settings.database_url)
    await pool.open()
    try:
        gate = GateService(app, pool)
        # dev has no policy: its gate passes and the version goes live there.
        await rebuild_read_models(settings)
        outcome = await gate.evaluate(dev, "manual", _max_position(app))
        assert outcome.decision is not None and outcome.decision.result == "passed", outcome
        await asyncio.to_thread(app.promote, admin, dev)
        result = await asyncio.to_thread(
            app.request_promotion,
            admin,
            project,
            RequestPromotion(version="1.0.0", to="staging"),
        )
        staging = UUID(result.ids["id"])
        await rebuild_read_models(settings)
        target = _max_position(app)
        if not await queries.wait_for_position(pool, target, 60):
            raise RuntimeError("the read models never reached the store's position")

        promotion = await asyncio.to_thread(app.promotion_for_gate, staging)
        project_agg = app.load(Project, project, "project")
        rules = effective_policy(app, project_agg, "staging").rules
        inputs, _ = await gate.snapshot_inputs(promotion)
        decision = domain_gate.evaluate(rules, inputs)

        async def full() -> None:
            await gate.evaluate(staging, "manual", target)

        async def load() -> None:
            await asyncio.to_thread(app.promotion_for_gate, staging)

        async def snapshot() -> None:
            await gate.snapshot_inputs(promotion)

        async def snapshot_cold() -> None:  # a new service: no open findings kept yet
            await GateService(app, pool).snapshot_inputs(promotion)

        async def pure() -> None:
            domain_gate.evaluate(rules, inputs)

        async def digest() -> None:
            inputs.digest()

        async def record() -> None:
            await asyncio.to_thread(app.record_gate, staging, inputs, target, "manual", target)

        return {
            "facts": {
                "findings": len(inputs.findings),
                "exceptions": len(inputs.exceptions),
                "scans": len(inputs.scans),
                "tests": len(inputs.tests),
                "approvals": len(inputs.approvals),
                "rules": len(rules),
            },
            "decision": {
                "result": decision.result,
                "rules": {r.rule_id: r.status for r in decision.rules},
            },
            "end_to_end_evaluate": _stats(await _timed(runs, full)),
            # The parts of one evaluation: load the promotion, read the snapshot and build the
            # inputs, evaluate (which includes the digest), record the decision (which loads
            # the policy, evaluates and saves).
            "split": {
                "promotion_load": _stats(await _timed(runs, load)),
                "snapshot_read_and_inputs": _stats(await _timed(runs, snapshot)),
                "snapshot_read_and_inputs_cold": _stats(
                    await _timed(max(1, runs // 4), snapshot_cold)
                ),
                "pure_evaluate": _stats(await _timed(runs, pure)),
                "inputs_digest": _stats(await _timed(runs, digest)),
                "record_gate": _stats(await _timed(runs, record)),
            },
            "evaluations_recorded": len(
                (await asyncio.to_thread(app.promotion_for_gate, staging)).evaluations
            ),
        }
    finally:
        await pool.close()


def run(findings: int = 10_000, exceptions: int = 200, runs: int = 200) -> dict[str, Any]:
    admin_url = os.environ.get("DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
    nats_url = os.environ.get("NATS_URL", "nats://127.0.0.1:4222")
    dbname = f"pearl_gate_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(dbname)))
    url = urlparse(admin_url)._replace(path=f"/{dbname}").geturl()
    settings = Settings(
        database_url=url, nats_url=nats_url, subject_root=f"gate{uuid.uuid4().hex[:6]}"
    )
    try:
        asyncio.run(migrate(settings))
        env = event_store_env(url, 2, create_tables=False)
        app = PearlApp(env=env)
        try:
            start = time.perf_counter()
            org, project, info = _fill_findings(app, findings)
            asyncio.run(rebuild_read_models(settings))
            with psycopg.connect(url) as conn:
                ids = [
                    str(r[0])
                    for r in conn.execute(
                        "SELECT id FROM finding_view WHERE project_id = %s ORDER BY id",
                        (str(project),),
                    )
                ]
            dev = _fill_governance(app, org, project, info["admin"], ids, exceptions)
            measured = asyncio.run(_measure(app, settings, project, dev, info["admin"], runs))
            fill_s = time.perf_counter() - start
        finally:
            app.close()
        copy_rate = ceilings.postgres_copy_rate(url)
        es_rate = ceilings.event_store_batch_rate(env)
    finally:
        asyncio.run(drop_streams(nats_url, settings.subject_root))
        with psycopg.connect(admin_url, autocommit=True) as conn:
            conn.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(dbname))
            )
    e2e = measured["end_to_end_evaluate"]
    return {
        "benchmark": "gate",
        "machine": {"cores": os.cpu_count(), "python": platform.python_version()},
        "setup": {
            "findings_submitted": findings,
            "exceptions_approved": exceptions,
            "report_bytes": info["report_bytes"],
            "runs": runs,
            "setup_s": round(fill_s, 1),
        },
        **measured,
        "ceilings": {
            "postgres_copy_rows_per_s": round(copy_rate),
            "event_store_batched_events_per_s": round(es_rate),
        },
        "ratios": {
            "evaluations_per_s_vs_event_store_batched": round(e2e["per_s"] / es_rate, 5),
            "facts_per_s_vs_postgres_copy": round(
                e2e["per_s"] * measured["facts"]["findings"] / copy_rate, 3
            ),
        },
        "targets": {"p99_under_50ms": e2e["p99_ms"] < 50.0},
    }
