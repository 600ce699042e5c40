"""RFC 9457 problem details: the one mapping from errors to HTTP responses."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from litestar import Request, Response
from litestar.background_tasks import BackgroundTask
from litestar.exceptions import HTTPException, ValidationException
from litestar.status_codes import HTTP_500_INTERNAL_SERVER_ERROR

from contracts.text import explain
from domain import errors
from services.api.security import RateLimited, denial_actor

log = logging.getLogger(__name__)
PROBLEM_JSON = "application/problem+json"
TYPE_BASE = "urn:pearl:problem:"

STATUS: dict[type[errors.PearlError], int] = {
    errors.Unauthenticated: 401,
    errors.Forbidden: 403,
    errors.NotFound: 404,
    errors.ConcurrencyConflict: 409,
    errors.Conflict: 409,
    errors.IdempotencyMismatch: 422,
    errors.PayloadTooLarge: 413,
    errors.ReportError: 422,
    errors.UnstorableText: 400,
    errors.InvalidInput: 422,
    errors.NotReady: 503,
}
_HTTP_CODES = {
    400: "invalid-request",
    401: "unauthenticated",
    403: "forbidden",
    404: "not-found",
    405: "method-not-allowed",
    413: "payload-too-large",
    415: "unsupported-media-type",
    429: "rate-limited",
    503: "unavailable",
}


def problem(
    status: int,
    code: str,
    title: str,
    detail: str,
    request: Request[Any, Any, Any] | None = None,
    **extra: Any,
) -> Response[dict[str, Any]]:
    body: dict[str, Any] = {
        "type": TYPE_BASE + code,
        "title": title,
        "status": status,
        "detail": detail,
        **extra,
    }
    if request is not None:
        body["instance"] = request.url.path
    headers = {"WWW-Authenticate": "Bearer"} if status == 401 else None
    return Response(body, status_code=status, media_type=PROBLEM_JSON, headers=headers)


def status_for(exc: errors.PearlError) -> int:
    for cls in type(exc).__mro__:
        if cls in STATUS:
            return STATUS[cls]
    return 400


DENIALS = (errors.Unauthenticated, errors.Forbidden, errors.CrossOrg)


def on_pearl_error(request: Request[Any, Any, Any], exc: errors.PearlError) -> Response[Any]:
    status = status_for(exc)
    title = exc.code.replace("-", " ").capitalize()
    extra: dict[str, Any] = {}
    located = getattr(exc, "errors", None)
    if isinstance(located, list):  # e.g. an invalid policy: every error with its location
        extra["errors"] = [
            {
                "location": e.location,
                "line": e.line,
                "column": e.column,
                "message": e.message,
            }
            for e in located
        ]
    response = problem(status, exc.code, title, exc.detail, request, **extra)
    if status == 503:
        response.headers["Retry-After"] = "1"
    if isinstance(exc, DENIALS) and not getattr(exc, "recorded", False):
        # `recorded`: the domain already wrote this refusal to the audit trail itself.
        response.background = BackgroundTask(_record_denial, request, exc)
    return response


async def _record_denial(request: Request[Any, Any, Any], exc: errors.PearlError) -> None:
    """Every refused request becomes an audit event of the caller's org (never the secret)."""
    org, actor = denial_actor(request)
    action = f"{request.method} {request.url.path}"
    code = "cross-org" if isinstance(exc, errors.CrossOrg) else exc.code
    try:
        await asyncio.to_thread(
            request.app.state.ctx.pearl.record_denial,
            org,
            actor,
            action,
            request.url.path,
            exc.detail,
            code,
            "http",
        )
    except Exception:
        log.exception("could not record an access denial")


def on_rate_limited(request: Request[Any, Any, Any], exc: RateLimited) -> Response[Any]:
    response = problem(429, "rate-limited", "Too many requests", str(exc), request)
    response.headers["Retry-After"] = str(exc.retry_after)
    return response


def on_validation(request: Request[Any, Any, Any], exc: ValidationException) -> Response[Any]:
    extra = exc.extra if isinstance(exc.extra, list) else []
    errors_ = [
        {
            "field": e.get("key"),
            "message": explain(str(e.get("message"))),
            "source": e.get("source"),
        }
        for e in extra
        if isinstance(e, dict)
    ]
    return problem(
        400, "invalid-request", "Invalid request", explain(str(exc.detail)), request, errors=errors_
    )


def on_http(request: Request[Any, Any, Any], exc: HTTPException) -> Response[Any]:
    code = _HTTP_CODES.get(exc.status_code, "http-error")
    response = problem(
        exc.status_code, code, code.replace("-", " ").capitalize(), str(exc.detail), request
    )
    response.headers.update(exc.headers or {})
    return response


def on_unexpected(request: Request[Any, Any, Any], exc: Exception) -> Response[Any]:
    log.exception("unhandled error", extra={"path": request.url.path})
    return problem(
        HTTP_500_INTERNAL_SERVER_ERROR,
        "internal",
        "Internal error",
        "the request failed unexpectedly; it was logged",
        request,
    )


HANDLERS: dict[type[Exception] | int, Any] = {
    errors.PearlError: on_pearl_error,
    RateLimited: on_rate_limited,
    ValidationException: on_validation,
    HTTPException: on_http,
    Exception: on_unexpected,
}
