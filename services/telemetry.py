"""Structured JSON logs carrying trace ids, and OpenTelemetry tracing/metrics set-up."""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

from opentelemetry import context as otel_context
from opentelemetry import metrics, trace
from opentelemetry.propagate import extract, inject
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter

_STD_ATTRS = frozenset(vars(logging.makeLogRecord({})).keys()) | {"message", "asctime"}
_SECRET_WORDS = ("password", "token", "secret", "authorization", "api_key")


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message, trace/span ids, extra fields."""

    def __init__(self, service: str) -> None:
        super().__init__()
        self.service = service

    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(),
            "level": record.levelname.lower(),
            "service": self.service,
            "logger": record.name,
            "message": record.getMessage(),
        }
        span = trace.get_current_span().get_span_context()
        if span.is_valid:
            out["trace_id"] = format(span.trace_id, "032x")
            out["span_id"] = format(span.span_id, "016x")
        for key, value in vars(record).items():
            if key in _STD_ATTRS or key.startswith("_"):
                continue
            out[key] = masked(key, value)
        if record.exc_info:
            out["exception"] = self.formatException(record.exc_info)
        return json.dumps(out, default=str)


def masked(key: str, value: Any) -> Any:
    """The value, with anything under a secret-looking key (at any depth) replaced by ***."""
    if any(word in key.lower() for word in _SECRET_WORDS):
        return "***"
    if isinstance(value, dict):
        return {k: masked(str(k), v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [masked("", v) for v in value]
    return value


def setup(
    service: str, level: str = "INFO", *, json_logs: bool = True, console: bool = False
) -> None:
    """Configure logging and OpenTelemetry for one process (idempotent enough for tests)."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(
        JsonFormatter(service) if json_logs else logging.Formatter("%(levelname)s %(message)s")
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    for noisy in ("uvicorn.access", "nats", "faststream", "httpx"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    resource = Resource.create({"service.name": f"pearl-{service}"})
    if not isinstance(trace.get_tracer_provider(), TracerProvider):
        provider = TracerProvider(resource=resource)
        if console:
            provider.add_span_processor(BatchSpanProcessor(ConsoleSpanExporter()))
        trace.set_tracer_provider(provider)
        metrics.set_meter_provider(MeterProvider(resource=resource))


def tracer() -> trace.Tracer:
    return trace.get_tracer("pearl")


def current_traceparent() -> str:
    """The W3C traceparent of the current span ('' outside any span)."""
    carrier: dict[str, str] = {}
    inject(carrier)
    return carrier.get("traceparent", "")


def headers_with_trace(headers: dict[str, str] | None = None) -> dict[str, str]:
    carrier = dict(headers or {})
    inject(carrier)
    return carrier


@contextmanager
def span_from(carrier: Mapping[str, str] | None, name: str, **attrs: Any) -> Iterator[trace.Span]:
    """A span continuing the trace carried in `carrier` (NATS headers or a traceparent dict)."""
    ctx = extract(dict(carrier or {}))
    token = otel_context.attach(ctx)
    try:
        with tracer().start_as_current_span(name, attributes=attrs) as span:
            yield span
    finally:
        otel_context.detach(token)
