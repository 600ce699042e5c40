"""Structured logs never carry secrets; settings redact and map database URLs."""

from __future__ import annotations

import json
import logging
import sys
from typing import Any

import pytest
from opentelemetry.sdk.trace import TracerProvider

from services.settings import event_store_env, redact
from services.store import RECORDER_TOPIC
from services.telemetry import JsonFormatter


def record(
    msg: str = "command applied",
    *args: Any,
    level: int = logging.INFO,
    extra: dict[str, Any] | None = None,
    exc_info: Any = None,
) -> logging.LogRecord:
    logger = logging.getLogger("pearl.test")
    return logger.makeRecord(
        "pearl.test", level, __file__, 10, msg, args, exc_info, extra=extra or {}
    )


def formatted(rec: logging.LogRecord, service: str = "worker") -> dict[str, Any]:
    line = JsonFormatter(service).format(rec)
    assert "\n" not in line
    parsed: dict[str, Any] = json.loads(line)
    return parsed


def test_json_formatter_emits_one_object_with_level_message_and_service_when_logging() -> None:
    out = formatted(record("applied %s at %d", "finding.record", 7, level=logging.WARNING))

    assert out["level"] == "warning"
    assert out["message"] == "applied finding.record at 7"
    assert out["service"] == "worker"
    assert out["logger"] == "pearl.test"
    assert out["time"].endswith("+00:00")


def test_json_formatter_keeps_extra_fields_and_drops_std_attributes_when_logging() -> None:
    out = formatted(record(extra={"subject": "pearl.cmd.acme.x.y", "position": 12}))

    assert out["subject"] == "pearl.cmd.acme.x.y"
    assert out["position"] == 12
    assert {"args", "lineno", "pathname", "msg", "levelno", "exc_info"}.isdisjoint(out)


@pytest.mark.parametrize(
    "field",
    [
        "password",
        "db_password",
        "token",
        "refresh_token",
        "client_secret",
        "Authorization",
        "authorization_header",
        "API_KEY",
    ],
)
def test_json_formatter_masks_the_value_when_field_name_looks_secret(field: str) -> None:
    out = formatted(record(extra={field: "hunter2-pk_acme_0123", "org": "acme"}))

    assert out[field] == "***"
    assert "hunter2" not in json.dumps(out)
    assert out["org"] == "acme"


def test_json_formatter_serialises_unusual_values_as_text_when_extra_is_not_json() -> None:
    out = formatted(record(extra={"kind": set, "org": "acme"}))

    assert out["kind"] == str(set)


def test_json_formatter_includes_the_traceback_when_logging_an_exception() -> None:
    try:
        raise RuntimeError("boom")
    except RuntimeError:
        exc_info = sys.exc_info()

    out = formatted(record("failed", level=logging.ERROR, exc_info=exc_info))

    assert out["level"] == "error"
    assert "RuntimeError: boom" in out["exception"]


def test_json_formatter_has_no_trace_ids_when_outside_a_span() -> None:
    out = formatted(record())

    assert "trace_id" not in out
    assert "span_id" not in out


def test_json_formatter_adds_trace_and_span_ids_when_inside_a_span() -> None:
    tracer = TracerProvider().get_tracer("tests")

    with tracer.start_as_current_span("work") as span:
        out = formatted(record())
        context = span.get_span_context()

    assert out["trace_id"] == format(context.trace_id, "032x")
    assert out["span_id"] == format(context.span_id, "016x")


# --- settings -------------------------------------------------------------------------------


def test_redact_hides_the_password_when_dsn_has_one() -> None:
    url = "postgresql://pearl:s3cr3t@db.internal:5433/pearl?sslmode=require"

    redacted = redact(url)

    assert "s3cr3t" not in redacted
    assert redacted == "postgresql://pearl:***@db.internal:5433/pearl?sslmode=require"


def test_redact_returns_url_unchanged_when_it_has_no_password() -> None:
    url = "postgresql://postgres@127.0.0.1:5432/postgres"

    assert redact(url) == url


@pytest.mark.parametrize("url", [None, ""])
def test_redact_returns_empty_string_when_url_is_missing(url: str | None) -> None:
    assert redact(url) == ""


def test_redact_hides_a_percent_encoded_password_when_it_contains_reserved_characters() -> None:
    redacted = redact("postgresql://u:p%40ss%3Aw@host/db")

    assert "p%40ss" not in redacted
    assert redacted == "postgresql://u:***@host/db"


def test_redact_keeps_ipv6_brackets_when_host_is_an_ipv6_literal() -> None:
    assert redact("postgresql://u:p@[::1]:5432/db") == "postgresql://u:***@[::1]:5432/db"


def test_event_store_env_maps_database_url_to_postgres_keys_when_url_is_complete() -> None:
    env = event_store_env(
        "postgresql://pearl:p%40ss@db.internal:5433/pearl_prod", 6, create_tables=True
    )

    assert env["PERSISTENCE_MODULE"] == "eventsourcing.postgres"
    assert env["APPLICATION_RECORDER_TOPIC"] == RECORDER_TOPIC
    assert (
        env.items()
        >= {
            "POSTGRES_DBNAME": "pearl_prod",
            "POSTGRES_HOST": "db.internal",
            "POSTGRES_PORT": "5433",
            "POSTGRES_USER": "pearl",
            "POSTGRES_PASSWORD": "p@ss",
        }.items()
    )
    assert (env["POSTGRES_POOL_SIZE"], env["POSTGRES_MAX_OVERFLOW"]) == ("6", "6")
    assert env["CREATE_TABLE"] == "y"


def test_event_store_env_uses_defaults_when_url_omits_parts() -> None:
    env = event_store_env("postgresql://", create_tables=False)

    assert env["POSTGRES_DBNAME"] == "postgres"
    assert env["POSTGRES_HOST"] == "127.0.0.1"
    assert env["POSTGRES_PORT"] == "5432"
    assert env["POSTGRES_USER"] == "postgres"
    assert env["POSTGRES_PASSWORD"] == ""
    assert env["POSTGRES_POOL_SIZE"] == "4"
    assert env["CREATE_TABLE"] == "n"


def test_event_store_env_values_are_all_strings_when_built() -> None:
    env = event_store_env("postgresql://u:p@h:1/d", 2, create_tables=False)

    assert all(isinstance(v, str) for v in env.values())


def test_nested_secret_fields_are_masked_when_logged_inside_a_dict() -> None:
    import json
    import logging

    from services.telemetry import JsonFormatter

    record = logging.makeLogRecord(
        {"msg": "call", "headers": {"Authorization": "Bearer pk_x", "accept": "json"}}
    )
    out = json.loads(JsonFormatter("t").format(record))
    assert out["headers"] == {"Authorization": "***", "accept": "json"}


# --- reserved LogRecord attributes ------------------------------------------------------------

RESERVED_NAMES = sorted(vars(logging.makeLogRecord({})).keys() | {"message", "asctime"})


@pytest.mark.parametrize("json_logs", [True, False])
def test_logging_every_reserved_record_attribute_as_extra_never_raises(json_logs: bool) -> None:
    import io

    from services import telemetry

    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(telemetry.JsonFormatter("up") if json_logs else telemetry.PlainFormatter())
    logger = logging.getLogger(f"pearl.test.reserved.{json_logs}")
    logger.handlers[:] = [handler]
    logger.propagate = False
    logger.setLevel(logging.INFO)
    extra = {name: f"value-of-{name}" for name in RESERVED_NAMES}

    logger.warning("process exited", extra=extra)  # the stdlib would raise KeyError here
    for name in RESERVED_NAMES:  # one at a time, as call sites do
        logger.info("one field", extra={name: f"value-of-{name}"})

    lines = stream.getvalue().splitlines()
    assert len(lines) == 1 + len(RESERVED_NAMES)
    if json_logs:
        first = json.loads(lines[0])
        assert first["message"] == "process exited"
        assert first["logger"] == f"pearl.test.reserved.{json_logs}"
        for name in RESERVED_NAMES:
            assert first[f"{name}_"] == f"value-of-{name}"
    else:
        for name in RESERVED_NAMES:
            assert f"{name}_=value-of-{name}" in lines[0]


def test_safe_extra_renames_only_colliding_keys_and_never_overwrites_another_field() -> None:
    from services.telemetry import safe_extra

    out = safe_extra({"process": "worker", "process_": "kept", "org": "acme"})

    assert out == {"process__": "worker", "process_": "kept", "org": "acme"}


def test_json_formatter_writes_one_json_line_when_extra_values_are_cyclic_or_keys_not_text():
    cyclic: list[Any] = []
    cyclic.append(cyclic)
    out = formatted(record(extra={"cycle": cyclic, "keys": {(1, 2): "tuple key"}}))

    assert out["message"] == "command applied"
    assert "cycle" in out


def test_no_log_call_in_the_code_base_passes_a_reserved_attribute_as_an_extra_key() -> None:
    """The renaming above is a safety net; call sites name their fields so none is renamed."""
    import ast
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    offenders = []
    for package in ("services", "domain", "projections", "contracts"):
        for path in (root / package).rglob("*.py"):
            for node in ast.walk(ast.parse(path.read_text())):
                if not isinstance(node, ast.Call):
                    continue
                for kw in node.keywords:
                    if kw.arg == "extra" and isinstance(kw.value, ast.Dict):
                        for key in kw.value.keys:
                            if isinstance(key, ast.Constant) and key.value in RESERVED_NAMES:
                                offenders.append(
                                    f"{path.relative_to(root)}:{node.lineno} {key.value}"
                                )
    assert offenders == []
