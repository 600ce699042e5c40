"""`/health`, `/ready` (tells the truth about lags and failures) and a minimal `/metrics`."""

from __future__ import annotations

from typing import Any

from litestar import MediaType, Response, get
from litestar.datastructures import State
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Gauge, generate_latest

from contracts.subjects import Subjects
from services.api.context import ApiContext
from services.readiness import EVENTS_TABLE, Readiness, Report


def readiness_of(state: State) -> Readiness:
    """The app's one `Readiness` (it remembers positions between checks to see what is stuck)."""
    found: Readiness | None = state.get("readiness")
    if found is None:
        ctx: ApiContext = state.ctx
        table = getattr(getattr(ctx.pearl, "recorder", None), "events_table_name", EVENTS_TABLE)
        subjects = Subjects(root=ctx.settings.subject_root)
        found = Readiness(ctx.settings, subjects, events_table=table)
        state["readiness"] = found
    return found


async def report_of(state: State) -> Report:
    ctx: ApiContext = state.ctx
    return await readiness_of(state).report(ctx.pool, ctx.nc)


@get("/health", operation_id="health", tags=["ops"], media_type=MediaType.JSON)
async def health() -> dict[str, str]:
    """The process is alive."""
    return {"status": "ok"}


@get("/ready", operation_id="ready", tags=["ops"])
async def ready(state: State) -> Response[dict[str, Any]]:
    """Ready to serve current reads: PostgreSQL and NATS reachable, the relay and every
    projection within their lag limits and moving, and no projection failing (503 otherwise,
    naming the projection, the position and the error)."""
    report = await report_of(state)
    return Response(report.body(), status_code=200 if report.ok else 503)


def metrics_text(report: Report) -> bytes:
    """The readiness report as Prometheus gauges."""
    registry = CollectorRegistry()
    Gauge("pearl_ready", "1 when /ready answers 200", registry=registry).set(int(report.ok))
    checks = Gauge(
        "pearl_ready_check_ok", "1 when the readiness check passes", ["check"], registry=registry
    )
    for name, value in report.checks.items():
        checks.labels(name).set(int(value == "ok"))
    if report.head is not None:
        Gauge(
            "pearl_event_store_head_position", "Last event-store position", registry=registry
        ).set(report.head)
    if report.relay is not None:
        Gauge(
            "pearl_relay_lag_events", "Events stored but not yet published", registry=registry
        ).set(report.relay["lag"])
    position = Gauge(
        "pearl_projection_checkpoint_position",
        "Last event-store position applied",
        ["checkpoint"],
        registry=registry,
    )
    lag = Gauge(
        "pearl_projection_lag_events",
        "Events stored but not yet projected",
        ["checkpoint"],
        registry=registry,
    )
    failing = Gauge(
        "pearl_projection_failing",
        "1 while a projection cannot apply the event at pearl_projection_failure_position",
        ["checkpoint", "projection"],
        registry=registry,
    )
    failed_at = Gauge(
        "pearl_projection_failure_position",
        "Event-store position a projection fails on",
        ["checkpoint", "projection"],
        registry=registry,
    )
    attempts = Gauge(
        "pearl_projection_failure_attempts",
        "Failed attempts at the failing batch",
        ["checkpoint", "projection"],
        registry=registry,
    )
    for name, state in report.projections.items():
        position.labels(name).set(state["position"])
        lag.labels(name).set(state["lag"])
    for failure in report.failures:
        failing.labels(failure.name, failure.projection).set(1)
        failed_at.labels(failure.name, failure.projection).set(failure.position)
        attempts.labels(failure.name, failure.projection).set(failure.attempts)
    return generate_latest(registry)


@get("/metrics", operation_id="metrics", tags=["ops"], include_in_schema=False)
async def metrics(state: State) -> Response[bytes]:
    """Prometheus text exposition of readiness: lags, checkpoints, projection failures."""
    report = await report_of(state)
    return Response(metrics_text(report), media_type=CONTENT_TYPE_LATEST)


ROUTES = [health, ready, metrics]
