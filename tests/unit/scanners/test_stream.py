"""stream_report hands out exactly what parse_report returns, validates first, leaves no file."""

from __future__ import annotations

import io
import json
import os
from collections import defaultdict
from pathlib import Path
from typing import Any

import pytest

from domain.errors import ReportError
from domain.scanners import (
    NormalizedFinding,
    ReportStream,
    parse_report,
    stream_report,
)
from domain.scanners.common import canonical_hash
from domain.scanners.fingerprint import dependency_key
from domain.scanners.model import Draft
from tests.unit.scanners.test_formats import (
    DOCUMENTS,
    sarif,
    sarif_result,
    semgrep,
    semgrep_result,
)
from tests.unit.scanners.test_samples import SAMPLES, params

CHUNK_SIZES = (1, 7, 5000)
SAMPLE_NAMES = (
    sorted(
        path.name
        for path in SAMPLES.iterdir()
        if path.suffix in (".json", ".sarif") and path.name != "expected.json"
    )
    if SAMPLES.is_dir()
    else []
)


def streamed(data: bytes, spill_dir: Path, tool: str | None = None) -> ReportStream:
    """Stream a report from bytes with its spill file in `spill_dir`."""
    return stream_report(io.BytesIO(data), tool=tool, spill_dir=str(spill_dir))


def collect(stream: ReportStream, size: int) -> list[NormalizedFinding]:
    """Gather every chunk, checking each chunk's size on the way."""
    chunks = list(stream.chunks(size))
    assert all(len(chunk) == size for chunk in chunks[:-1])
    assert all(0 < len(chunk) <= size for chunk in chunks)
    return [finding for chunk in chunks for finding in chunk]


def spill_fds(spill_dir: Path) -> list[str]:
    """Return this process's open descriptors on (anonymous) files in spill_dir."""
    found = []
    for fd in os.listdir("/proc/self/fd"):
        try:
            target = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:
            continue
        if target.startswith(f"{spill_dir}/"):
            found.append(target)
    return found


def assert_same(data: bytes, spill_dir: Path, tool: str | None = None) -> int:
    """Check stream_report against parse_report for every chunk size; return the count."""
    expected = parse_report(data, tool=tool)
    for size in CHUNK_SIZES:
        with streamed(data, spill_dir, tool) as stream:
            assert (stream.format, stream.tool, stream.tool_version) == (
                expected.format,
                expected.tool,
                expected.tool_version,
            )
            assert stream.count == len(expected.findings)
            assert collect(stream, size) == list(expected.findings)
            assert collect(stream, size) == list(expected.findings), "chunks() is re-iterable"
        assert not spill_fds(spill_dir)
    assert not list(spill_dir.iterdir())
    return len(expected.findings)


# --- equivalence -----------------------------------------------------------------------------


@pytest.mark.parametrize("name", params(SAMPLE_NAMES, "sample reports"))
def test_stream_matches_parse_report_when_reading_each_sample(name: str, tmp_path: Path) -> None:
    assert assert_same((SAMPLES / name).read_bytes(), tmp_path) > 0


@pytest.mark.parametrize("name", sorted(DOCUMENTS))
def test_stream_matches_parse_report_when_reading_each_format(name: str, tmp_path: Path) -> None:
    assert assert_same(json.dumps(DOCUMENTS[name]).encode(), tmp_path) > 0


def big_sarif() -> dict[str, Any]:
    """A SARIF log spanning several spill batches: duplicates, repeated snippets, two runs."""
    results = []
    for n in range(3000):
        result = sarif_result(1 + (n * 7919) % 400, snippet=f"call_{n % 37}()")
        results.append(result)
        if n % 11 == 0:
            results.append(json.loads(json.dumps(result)))  # a duplicate
    results.append({**sarif_result(5), "kind": "pass"})
    document = sarif(*results)
    second = json.loads(json.dumps(document["runs"][0]))
    second["tool"]["driver"]["name"] = "Semgrep OSS"
    second["results"] = results[:500]
    document["runs"].append(second)
    return document


def test_stream_matches_parse_report_when_sarif_spans_many_batches(tmp_path: Path) -> None:
    count = assert_same(json.dumps(big_sarif()).encode(), tmp_path)
    assert 3000 < count < 3500


def test_stream_matches_parse_report_when_rules_follow_results(tmp_path: Path) -> None:
    document = big_sarif()
    for run in document["runs"]:
        run["tool"] = run.pop("tool")  # move "tool" after "results"
    assert list(document["runs"][0]) == ["results", "tool"]
    assert_same(json.dumps(document).encode(), tmp_path)


def test_stream_matches_parse_report_when_lines_exceed_64_bits(tmp_path: Path) -> None:
    lines: list[Any] = [1e21, 3, 2e19, 3, 1]  # yajl reads big numbers as floats
    results = [semgrep_result(line) for line in lines]
    report = parse_report(json.dumps(semgrep(*results)).encode())
    assert [finding.line for finding in report.findings] == [10**21, 3, 2 * 10**19, 1]
    assert_same(json.dumps(semgrep(*results)).encode(), tmp_path)
    assert_same(json.dumps(sarif(*(sarif_result(line) for line in lines))).encode(), tmp_path)


# --- the fingerprint algorithm is unchanged --------------------------------------------------


def reference(drafts: list[Draft]) -> list[tuple[int, str]]:
    """The pre-streaming algorithm, verbatim in effect: (kept index, fingerprint) pairs."""
    seen: set[tuple[object, ...]] = set()
    unique: list[int] = []
    for index, draft in enumerate(drafts):
        dependency = dependency_key(draft)
        identity: tuple[object, ...] = (
            ("dependency", *dependency)
            if dependency is not None
            else ("finding", draft.tool, draft.rule_id, draft.path, draft.line, draft.key)
        )
        if identity not in seen:
            seen.add(identity)
            unique.append(index)
    prints: dict[int, str] = {}
    groups: defaultdict[tuple[str, ...], list[int]] = defaultdict(list)
    for index in unique:
        draft = drafts[index]
        dependency = dependency_key(draft)
        if dependency is not None:
            prints[index] = canonical_hash(["pearl-dependency-v1", *dependency])
        else:
            groups[(draft.tool, draft.rule_id, draft.path or "", draft.key)].append(index)
    for base, members in groups.items():
        members.sort(key=lambda i: (drafts[i].line or 0, drafts[i].end_line or 0, i))
        for occurrence, index in enumerate(members):
            prints[index] = canonical_hash(["pearl-finding-v1", *base, occurrence])
    return [(index, prints[index]) for index in unique]


def test_fingerprints_match_the_original_algorithm_when_keys_repeat_and_lines_vary() -> None:
    from domain.scanners.fingerprint import finalize

    drafts = [
        Draft(
            tool="t",
            rule_id=f"r{n % 3}",
            title="x",
            severity="low",
            kind="dependency" if n % 13 == 0 else "code",
            message="m",
            key=f"k{n % 5}",
            path=None if n % 7 == 0 else f"p{n % 4}",
            line=None if n % 9 == 0 else (n * 31) % 17,
            end_line=None if n % 6 == 0 else (n * 17) % 5,
            package_name=f"pkg{n % 3}" if n % 13 == 0 else None,
            vuln_id=f"cve-{n % 2}" if n % 13 == 0 else None,
        )
        for n in range(600)
    ]
    expected = reference(drafts)
    got = finalize(drafts)
    assert [f.fingerprint for f in got] == [fingerprint for _, fingerprint in expected]
    assert list(got) == [drafts[index].finish(fp) for index, fp in expected]


# --- validation and spill files --------------------------------------------------------------

TRUNCATED = json.dumps(semgrep(*(semgrep_result(n) for n in range(1, 50)))).encode()
DEEP_PAST_HEAD = semgrep(
    *(semgrep_result(n) for n in range(1, 400)),
    semgrep_result(500) | {"extra": json.loads("[" * 300 + "]" * 300)},
)
BAD: dict[str, tuple[bytes, str]] = {
    "empty": (b"", r"empty \(0 bytes\)"),
    "whitespace": (b"   \n", "only whitespace"),
    "truncated": (TRUNCATED[: len(TRUNCATED) // 2], "truncated"),
    "truncated sarif": (json.dumps(big_sarif()).encode()[:-300], "truncated"),
    "not json": (b"<html>not a report</html>", "not valid JSON"),
    "unknown format": (json.dumps({"scanner": "x", "items": []}).encode(), "Unrecognised"),
    "sarif 2.0": (json.dumps(sarif(sarif_result(1), version="2.0.0")).encode(), "2.1.0"),
    "sarif 2.0 after runs": (
        json.dumps({"runs": [{"results": [sarif_result(1)] * 3000}], "version": "2.0.0"}).encode(),
        "2.1.0",
    ),
    "deep nesting": (b"[" * 10000 + b"]" * 10000, "deeper than 256 levels"),
    "deep nesting past the head": (json.dumps(DEEP_PAST_HEAD).encode(), "deeper than 256"),
    "bad result late": (
        json.dumps(semgrep(*(semgrep_result(n) for n in range(1, 2000)), "oops")).encode(),  # type: ignore[arg-type]
        "malformed",
    ),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_report_error_comes_from_stream_report_when_input_is_bad(case: str, tmp_path: Path) -> None:
    data, message = BAD[case]
    with pytest.raises(ReportError, match=message):
        streamed(data, tmp_path)
    assert not spill_fds(tmp_path)
    assert not list(tmp_path.iterdir())


def test_report_error_comes_from_stream_report_when_tool_is_unknown(tmp_path: Path) -> None:
    with pytest.raises(ReportError, match="Unknown report format 'nessus'"):
        streamed(json.dumps(DOCUMENTS["sarif"]).encode(), tmp_path, tool="nessus")
    assert not spill_fds(tmp_path)


def test_close_removes_the_spill_file_when_called(tmp_path: Path) -> None:
    stream = streamed(json.dumps(big_sarif()).encode(), tmp_path)
    assert spill_fds(tmp_path), "the spill file lives until close()"
    assert not list(tmp_path.iterdir()), "the spill file is anonymous: it has no name to leave"
    stream.close()
    stream.close()
    assert not spill_fds(tmp_path)
    with pytest.raises(ValueError, match="closed"):
        next(stream.chunks())


def test_context_manager_closes_the_stream_when_leaving(tmp_path: Path) -> None:
    with streamed(json.dumps(big_sarif()).encode(), tmp_path) as stream:
        first = next(stream.chunks(100))
        assert len(first) == 100
    assert not spill_fds(tmp_path)


def test_chunk_size_is_rejected_when_below_one(tmp_path: Path) -> None:
    stream = streamed(json.dumps(DOCUMENTS["sarif"]).encode(), tmp_path)
    with stream, pytest.raises(ValueError, match="at least 1"):
        next(stream.chunks(0))


def test_stream_yields_no_chunk_when_report_has_no_findings(tmp_path: Path) -> None:
    with streamed(json.dumps(semgrep()).encode(), tmp_path) as stream:
        assert stream.count == 0
        assert list(stream.chunks()) == []
