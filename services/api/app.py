"""Litestar app factory: routes, problem+json errors, health/readiness, tracing."""

from __future__ import annotations

import logging
from typing import Any

from litestar import Litestar, Request, Response
from litestar.config.cors import CORSConfig
from litestar.datastructures import State
from litestar.enums import ScopeType
from litestar.openapi import OpenAPIConfig
from litestar.types import ASGIApp, Message, Receive, Scope, Send

from domain.base import current_channel
from domain.base import current_traceparent as event_traceparent
from services.api.agents import AgentController, TaskController
from services.api.context import ApiContext, ProjectionLag
from services.api.governance import ROUTES as GOVERNANCE_ROUTES
from services.api.guard import input_guard
from services.api.health import ROUTES as HEALTH_ROUTES
from services.api.problem_docs import document_problems
from services.api.problems import HANDLERS, problem
from services.api.routes import ROUTES
from services.api.security import hardening_middleware
from services.api.targets import ROUTES as TARGET_ROUTES
from services.api.vex import VexController
from services.telemetry import current_traceparent, span_from

log = logging.getLogger(__name__)
VERSION = "0.1.0"


def tracing_middleware(app: ASGIApp) -> ASGIApp:
    """One span per request, continuing the caller's `traceparent`; events are stamped with it."""

    async def middleware(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != ScopeType.HTTP:
            await app(scope, receive, send)
            return
        headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in scope["headers"]}
        method = str(scope.get("method", ""))
        with span_from(headers, f"{method} {scope['path']}", **{"http.method": method}) as span:
            token = event_traceparent.set(current_traceparent())
            channel = current_channel.set("http")

            async def send_with_status(message: Message) -> None:
                if message["type"] == "http.response.start":
                    span.set_attribute("http.status_code", message["status"])
                await send(message)

            try:
                await app(scope, receive, send_with_status)
            finally:
                current_channel.reset(channel)
                event_traceparent.reset(token)

    return middleware


def on_projection_lag(request: Request[Any, Any, Any], exc: ProjectionLag) -> Response[Any]:
    response = problem(
        503, "projection-lag", "Read models are behind", str(exc), request, position=exc.position
    )
    response.headers["Retry-After"] = "1"
    return response


def create_app(ctx: ApiContext) -> Litestar:
    """Build the API around an already-wired context (the composition root owns connections)."""
    settings = ctx.settings
    cors = CORSConfig(allow_origins=settings.cors_origins) if settings.cors_origins else None
    app = Litestar(
        route_handlers=[
            *HEALTH_ROUTES,
            *ROUTES,
            VexController,
            *TARGET_ROUTES,
            *GOVERNANCE_ROUTES,
            AgentController,
            TaskController,
        ],
        state=State({"ctx": ctx}),
        exception_handlers={**HANDLERS, ProjectionLag: on_projection_lag},
        middleware=[
            tracing_middleware,
            hardening_middleware(settings.request_timeout_seconds, settings.upload_timeout_seconds),
            input_guard(settings.max_body_bytes),
        ],
        openapi_config=OpenAPIConfig(
            title="PeaRL API",
            version=VERSION,
            description="Event-sourced governance for software that agents and CI/CD ship.",
            path="/schema",
        ),
        request_max_body_size=settings.max_body_bytes,
        cors_config=cors,
        debug=False,
        logging_config=None,
    )
    document_problems(app)
    return app
