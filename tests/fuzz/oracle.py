"""What every report parser must do with any bytes, and the seeds fuzzers start from.

A parser either returns findings whose every text PostgreSQL text/jsonb and JSON can carry, or
raises the domain's ReportError; any other exception, or an unsafe text, is a bug. Seeds are
the real scanner samples (shrunk to a few results each, so mutations stay fast) plus one
hand-written report per format, each behind a selector byte naming the parser to force.
"""

from __future__ import annotations

import io
import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from domain.errors import ReportError
from domain.scanners import FORMATS, ParsedReport, parse_report, stream_report
from domain.scanners.safe_text import is_safe

#: Selector byte values: 0 auto-detects, n forces the n-th format (by name).
CHOICES: tuple[str | None, ...] = (None, *sorted(FORMATS))
_ROOT = Path(__file__).resolve().parents[2]
_SHRINK_TO = 3


def samples_dir() -> Path:
    """The real scanner samples: PEARL_SAMPLES_DIR, else ../shared, else /work/shared."""
    env = os.environ.get("PEARL_SAMPLES_DIR")
    if env:
        return Path(env)
    beside = _ROOT.parent / "shared" / "samples" / "scans"
    return beside if beside.is_dir() else Path("/work/shared/samples/scans")


def shrink(value: Any) -> Any:
    """Keep the first few elements of every list, so a sample stays small but real."""
    if isinstance(value, dict):
        return {key: shrink(item) for key, item in value.items()}
    if isinstance(value, list):
        return [shrink(item) for item in value[:_SHRINK_TO]]
    return value


def seed_documents() -> Iterator[tuple[str, bytes]]:
    """Yield (name, report bytes): every shrunk sample, then one document per format."""
    from tests.unit.scanners.test_formats import DOCUMENTS

    folder = samples_dir()
    if folder.is_dir():
        for path in sorted(folder.glob("*.json")) + sorted(folder.glob("*.sarif")):
            if path.name == "expected.json":
                continue
            yield path.name, json.dumps(shrink(json.loads(path.read_bytes()))).encode()
    for name, document in sorted(DOCUMENTS.items()):
        yield f"{name}.doc", json.dumps(document).encode()


def seeds() -> Iterator[tuple[str, bytes]]:
    """Yield (name, fuzz input): each seed document auto-detected and forced to its format."""
    for name, data in seed_documents():
        yield f"auto-{name}", b"\x00" + data
        try:
            chosen = CHOICES.index(parse_report(data).format)
        except ReportError:
            continue
        yield f"forced-{name}", bytes([chosen]) + data


def split(data: bytes) -> tuple[str | None, bytes]:
    """Split a fuzz input into the format it forces (None: detect) and the report."""
    if not data:
        return None, b""
    return CHOICES[data[0] % len(CHOICES)], data[1:]


def check_report(report: ParsedReport) -> None:
    """Assert what any parsed report promises: safe texts, one fingerprint each."""
    assert is_safe(report.tool) and is_safe(report.tool_version or "")
    for finding in report.findings:
        for value in finding.to_dict().values():
            for text in value if isinstance(value, list) else [value]:
                if isinstance(text, str):
                    assert is_safe(text), (finding, text)
                    text.encode("utf-8")
        assert len(finding.fingerprint) == 64


def check_error(error: ReportError) -> None:
    """Assert a refusal can travel as a problem detail and a DLQ header: safe, short lines."""
    message = str(error)
    assert message and is_safe(message) and "\n" not in message and "\r" not in message, message
    message.encode("utf-8")


def run_one(data: bytes) -> None:
    """Parse one fuzz input both ways; only ReportError may escape, and both must agree."""
    tool, report = split(data)
    try:
        whole = parse_report(report, tool=tool)
    except ReportError as error:
        check_error(error)
        whole = None
    try:
        with stream_report(io.BytesIO(report), tool=tool) as streamed:
            chunked = [finding for chunk in streamed.chunks(7) for finding in chunk]
            sanitized = streamed.sanitized
    except ReportError as error:
        check_error(error)
        assert whole is None, "stream_report refused what parse_report accepted"
        return
    assert whole is not None, "parse_report refused what stream_report accepted"
    check_report(whole)
    assert chunked == list(whole.findings)
    assert sanitized == whole.sanitized
