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

#: Attributes every LogRecord has (plus the two `Formatter` adds): an `extra` key among them
#: would make `Logger.makeRecord` raise KeyError, and the log call with it.
RESERVED = frozenset(vars(logging.makeLogRecord({})).keys()) | {"message", "asctime"}
_STD_ATTRS = RESERVED
_SECRET_WORDS = ("password", "token", "secret", "authorization", "api_key")
_std_make_record = logging.Logger.makeRecord


def safe_extra(extra: Mapping[str, Any] | None) -> dict[str, Any] | None:
    """`extra` with every key that a LogRecord already has renamed `<key>_` (`process` →
    `process_`), so no field name can turn a log call into an exception."""
    if not extra:
        return None
    out: dict[str, Any] = {}
    for key, value in extra.items():
        name = str(key)
        while name in RESERVED or name in out or (name != key and name in extra):
            name += "_"
        out[name] = value
    return out


def _make_record(
    self: logging.Logger,
    name: str,
    level: int,
    fn: str,
    lno: int,
    msg: object,
    args: Any,
    exc_info: Any,
    func: str | None = None,
    extra: Mapping[str, object] | None = None,
    sinfo: str | None = None,
) -> logging.LogRecord:
    return _std_make_record(
        self, name, level, fn, lno, msg, args, exc_info, func, safe_extra(extra), sinfo
    )


def install_safe_records() -> None:
    """Make every logger (ours, libraries', already created or not) rename colliding `extra`
    keys instead of raising: `Logger.makeRecord` is where the stdlib raises."""
    logging.Logger.makeRecord = _make_record  # type: ignore[method-assign]


install_safe_records()


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
            if key in _STD_ATTRS or key.startswith("_") or key in out:
                continue
            out[key] = masked(key, value)
        if record.exc_info:
            out["exception"] = self.formatException(record.exc_info)
        try:
            return json.dumps(out, default=str)
        except (TypeError, ValueError, RecursionError):  # e.g. a cycle: still one line of JSON
            return json.dumps({k: v if isinstance(v, str) else repr(v) for k, v in out.items()})


class PlainFormatter(logging.Formatter):
    """`LEVEL message key=value ...`: the extra fields of a record on one human-readable line."""

    def format(self, record: logging.LogRecord) -> str:
        line = f"{record.levelname} {record.getMessage()}"
        fields = [
            f"{key}={masked(key, value)}"
            for key, value in vars(record).items()
            if key not in _STD_ATTRS and not key.startswith("_")
        ]
        if fields:
            line += " " + " ".join(fields)
        if record.exc_info:
            line += "\n" + self.formatException(record.exc_info)
        return line


_MAX_DEPTH = 16


def masked(key: str, value: Any, depth: int = 0) -> Any:
    """The value, with anything under a secret-looking key (at any depth) replaced by ***;
    nesting deeper than `_MAX_DEPTH` (a cycle, say) is cut to "..."."""
    if any(word in key.lower() for word in _SECRET_WORDS):
        return "***"
    if isinstance(value, dict | list | tuple) and depth >= _MAX_DEPTH:
        return "..."
    if isinstance(value, dict):
        return {str(k): masked(str(k), v, depth + 1) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [masked("", v, depth + 1) for v in value]
    return value


def setup(
    service: str, level: str = "INFO", *, json_logs: bool = True, console: bool = False
) -> None:
    """Configure logging and OpenTelemetry for one process (idempotent enough for tests)."""
    install_safe_records()
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter(service) if json_logs else PlainFormatter())
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
