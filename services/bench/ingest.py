"""`pearl bench ingest`: a 10,000-result SARIF through the API until every finding is queryable."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import httpx
import psycopg
from psycopg import sql

from services.bench import ceilings
from services.embedded import find_free_port
from services.settings import event_store_env


def sarif_report(results: int, files: int, salt: str = "") -> bytes:
    """A deterministic SARIF 2.1.0 log: `results` results spread over `files` files."""
    rules = [
        {
            "id": f"bench.rule.{r}",
            "shortDescription": {"text": f"Rule {r}"},
            "properties": {"security-severity": str(2 + r % 8)},
        }
        for r in range(50)
    ]
    out = []
    for i in range(results):
        out.append(
            {
                "ruleId": f"bench.rule.{i % 50}",
                "level": "warning",
                "message": {"text": f"Finding {i}{salt} in generated code"},
                "locations": [
                    {
                        "physicalLocation": {
                            "artifactLocation": {"uri": f"src/pkg{i % 40}/module_{i % files}.py"},
                            "region": {
                                "startLine": 10 + i % 500,
                                "snippet": {"text": f"call_{i}()"},
                            },
                        }
                    }
                ],
                "partialFingerprints": {"primaryLocationLineHash": f"{i:016x}"},
            }
        )
    log = {
        "version": "2.1.0",
        "$schema": "https://json.schemastore.org/sarif-2.1.0.json",
        "runs": [
            {
                "tool": {"driver": {"name": "BenchScanner", "version": "1.0", "rules": rules}},
                "results": out,
            }
        ],
    }
    return json.dumps(log).encode()


@dataclass
class Stack:
    url: str
    key: str
    proc: subprocess.Popen[str]
    database_url: str
    nats_url: str


def _children(pid: int) -> list[int]:
    kids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError):
                stat = (entry / "stat").read_text()
                if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                    kids.append(int(entry.name))
    return kids


def peak_rss_mb(pid: int) -> dict[str, float]:
    """VmHWM (peak resident memory) of each PeaRL child process of `pearl up`."""
    peaks: dict[str, float] = {}
    for child in _children(pid):
        with contextlib.suppress(OSError):
            cmdline = (Path("/proc") / str(child) / "cmdline").read_text().split("\0")
            name = cmdline[-2] if "run" in cmdline else Path(cmdline[0]).name
            for line in (Path("/proc") / str(child) / "status").read_text().splitlines():
                if line.startswith("VmHWM:"):
                    peaks[name] = round(int(line.split()[1]) / 1024, 1)
    return peaks


@contextlib.contextmanager
def running_stack(home: Path) -> Iterator[Stack]:
    """`pearl up` in a scratch home; external servers get a scratch database and subject root."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PEARL_")}
    admin_db = env.get("DATABASE_URL")
    dbname = f"pearl_bench_{uuid.uuid4().hex[:8]}"
    if admin_db and env.get("NATS_URL"):
        with psycopg.connect(admin_db, autocommit=True) as conn:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(dbname)))
        env["DATABASE_URL"] = urlparse(admin_db)._replace(path=f"/{dbname}").geturl()
        env["PEARL_SUBJECT_ROOT"] = f"bench{uuid.uuid4().hex[:6]}"
    port = find_free_port()
    proc = subprocess.Popen(  # noqa: S603
        [sys.executable, "-m", "services.cli.main", "up", "--port", str(port), "--home", str(home)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        seen: dict[str, str] = {}
        assert proc.stdout is not None
        for line in proc.stdout:
            key, _, value = line.strip().partition(": ")
            seen[key] = value
            if key == "PeaRL API":
                break
        pearl_env = dict(
            line.split("=", 1)
            for line in (home / "pearl.env").read_text().splitlines()
            if "=" in line
        )
        yield Stack(
            seen["PeaRL API"],
            (home / "admin.key").read_text().strip(),
            proc,
            pearl_env["DATABASE_URL"],
            pearl_env["NATS_URL"],
        )
    finally:
        proc.send_signal(2)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.communicate(timeout=60)
        if admin_db and env.get("NATS_URL"):
            from services.bench.replay import drop_streams

            asyncio.run(drop_streams(env["NATS_URL"], env["PEARL_SUBJECT_ROOT"]))
            with psycopg.connect(admin_db, autocommit=True) as conn:
                conn.execute(
                    sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(
                        sql.Identifier(dbname)
                    )
                )


def _ingest(
    http: httpx.Client, project: str, body: bytes, target: str
) -> tuple[dict[str, Any], float, float]:
    """Submit, then wait until the read model has it; (answer, accepted s, queryable s)."""
    start = time.perf_counter()
    r = http.post(
        f"/v1/projects/{project}/scans", content=body, params={"target": target, "full": "true"}
    )
    r.raise_for_status()
    accepted = time.perf_counter() - start
    answer = r.json()
    for _ in range(60):
        q = http.get(
            f"/v1/projects/{project}/findings",
            params={"min_position": answer["position"], "limit": 1},
        )
        if q.status_code == 200:
            break
    else:
        raise RuntimeError(f"findings never became queryable: {q.text}")
    return answer, accepted, time.perf_counter() - start


def run(findings: int = 10_000, files: int = 2_000) -> dict[str, Any]:
    report = sarif_report(findings, files)
    changed = sarif_report(findings, files, salt="")[:-2] + b" ]}"  # same findings, new bytes
    with (
        tempfile.TemporaryDirectory(prefix="pearl-bench-") as tmp,
        running_stack(Path(tmp) / ".pearl") as stack,
        httpx.Client(
            base_url=stack.url, timeout=600, headers={"Authorization": f"Bearer {stack.key}"}
        ) as http,
    ):
        org = f"bench-{uuid.uuid4().hex[:6]}"
        http.post("/v1/orgs", json={"slug": org, "name": "Bench"}).raise_for_status()
        project = http.post(
            f"/v1/orgs/{org}/projects", json={"slug": "bench", "name": "Bench"}
        ).json()["id"]
        first, first_accept, first_query = _ingest(http, project, report, "bench")
        again, again_accept, _ = _ingest(http, project, report, "bench")
        rescan, rescan_accept, rescan_query = _ingest(http, project, changed, "bench")
        rss = peak_rss_mb(stack.proc.pid)
        env = event_store_env(stack.database_url, 2, create_tables=False)
        js_rate = asyncio.run(ceilings.jetstream_publish_rate(stack.nats_url))
        copy_rate = ceilings.postgres_copy_rate(stack.database_url)
        es_rate = ceilings.event_store_batch_rate(env)
    rate = findings / first_query
    return {
        "benchmark": "ingest",
        "machine": {"cores": os.cpu_count(), "python": platform.python_version()},
        "report": {"results": findings, "files": files, "bytes": len(report)},
        "first_ingest": {
            "counts": first["counts"],
            "accepted_s": round(first_accept, 3),
            "queryable_s": round(first_query, 3),
            "findings_per_s": round(rate),
        },
        "same_report_again": {"accepted_s": round(again_accept, 3), "counts": again["counts"]},
        "rescan_same_findings": {
            "counts": rescan["counts"],
            "accepted_s": round(rescan_accept, 3),
            "queryable_s": round(rescan_query, 3),
        },
        "peak_rss_mb": rss,
        "ceilings": {
            "jetstream_publish_async_msgs_per_s": round(js_rate),
            "postgres_copy_rows_per_s": round(copy_rate),
            "event_store_batched_events_per_s": round(es_rate),
        },
        "ratios": {
            "findings_per_s_vs_event_store_batched": round(rate / es_rate, 3),
            "findings_per_s_vs_jetstream_publish": round(rate / js_rate, 3),
        },
        "targets": {
            "queryable_under_5s": first_query < 5.0,
            "reingest_same_report_under_3s": again_accept < 3.0,
        },
    }


def pathological_reports() -> dict[str, bytes]:
    """Reports shaped to blow up a naive parser: deep, long keys, wide, many results, rules."""
    keyed: Any = 0
    for _ in range(8):
        keyed = {"k" * 1000: keyed}
    wide_rules = {"id": "r", "shortDescription": {"text": "rule"}}
    return {
        "deep_100k": b'{"runs":' + b"[" * 100_000 + b"]" * 100_000 + b"}",
        "deep_objects_100k": b'{"runs":[{"results":[' + b'{"a":' * 100_000 + b"0",
        "long_keys": json.dumps({"runs": [{"results": [{"properties": keyed}]}]}).encode(),
        "wide_item_5m": json.dumps(
            {"version": "2.1.0", "runs": [{"results": [{"ruleId": "r", "x": [0] * 5_000_000}]}]}
        ).encode(),
        "wide_keys_1m": json.dumps(
            {"runs": [{"results": [{"ruleId": "r", "x": {str(n): 0 for n in range(1_000_000)}}]}]}
        ).encode(),
        "many_results_1_1m": b'{"version":"2.1.0","runs":[{"results":['
        + b"{}," * 1_100_000
        + b"{}]}]}",
        "wide_rules_1m": json.dumps(
            {
                "version": "2.1.0",
                "runs": [{"tool": {"driver": {"name": "t", "rules": [wide_rules] * 1_000_000}}}],
            }
        ).encode(),
    }


def _api_peak(stack: Stack) -> float:
    return peak_rss_mb(stack.proc.pid).get("api", 0.0)


def _pathological(http: httpx.Client, stack: Stack, project: str) -> dict[str, Any]:
    """Submit each pathological report; the answer and the API's peak RSS after it."""
    out: dict[str, Any] = {}
    for name, body in pathological_reports().items():
        start = time.perf_counter()
        r = http.post(f"/v1/projects/{project}/scans", content=body, params={"target": name})
        problem = r.json() if r.headers.get("content-type", "").endswith("json") else {}
        out[name] = {
            "bytes": len(body),
            "status": r.status_code,
            "type": problem.get("type"),
            "answer_s": round(time.perf_counter() - start, 2),
            "api_peak_rss_mb": _api_peak(stack),
        }
    return out


def _queryable(http: httpx.Client, project: str, position: int, timeout: float) -> float | None:
    """Seconds until the read model reached `position` (None: not within `timeout`)."""
    start = time.perf_counter()
    while time.perf_counter() - start < timeout:
        q = http.get(
            f"/v1/projects/{project}/findings", params={"min_position": position, "limit": 1}
        )
        if q.status_code == 200:
            return time.perf_counter() - start
    return None


def run_large(megabytes: int = 100) -> dict[str, Any]:
    """Memory stays flat in report size and shape: peak RSS while ingesting big and hostile reports.

    The pathological reports go first (VmHWM only grows): each must be refused with the
    report-too-complex problem while the API's peak stays near its idle figure.
    """
    results = int(megabytes * 1_000_000 / 337)
    with tempfile.TemporaryDirectory(prefix="pearl-bench-") as tmp:
        path = Path(tmp) / "large.sarif"
        path.write_bytes(sarif_report(results, max(2_000, results // 5)))
        size = path.stat().st_size
        with (
            running_stack(Path(tmp) / ".pearl") as stack,
            httpx.Client(
                base_url=stack.url, timeout=3600, headers={"Authorization": f"Bearer {stack.key}"}
            ) as http,
        ):
            org = f"bench-{uuid.uuid4().hex[:6]}"
            http.post("/v1/orgs", json={"slug": org, "name": "Bench"}).raise_for_status()
            project = http.post(
                f"/v1/orgs/{org}/projects", json={"slug": "big", "name": "Big"}
            ).json()["id"]
            before = peak_rss_mb(stack.proc.pid)
            hostile = _pathological(http, stack, project)
            start = time.perf_counter()
            with path.open("rb") as fh:
                r = http.post(f"/v1/projects/{project}/scans", content=fh, params={"target": "big"})
            r.raise_for_status()
            accepted = time.perf_counter() - start
            waited = _queryable(http, project, r.json()["position"], timeout=1800)
            queryable = None if waited is None else accepted + waited
            after = peak_rss_mb(stack.proc.pid)
            env = event_store_env(stack.database_url, 2, create_tables=False)
            js_rate = asyncio.run(ceilings.jetstream_publish_rate(stack.nats_url))
            copy_rate = ceilings.postgres_copy_rate(stack.database_url)
            es_rate = ceilings.event_store_batch_rate(env)
    api_before = before.get("api", 0.0)
    return {
        "benchmark": "ingest-large",
        "machine": {"cores": os.cpu_count(), "python": platform.python_version()},
        "report": {"results": results, "bytes": size},
        "accepted_s": round(accepted, 1),
        "queryable_s": None if queryable is None else round(queryable, 1),
        "findings_per_s": round(results / accepted),
        "findings_queryable_per_s": None if queryable is None else round(results / queryable),
        "peak_rss_mb_before": before,
        "pathological": hostile,
        "peak_rss_mb_after": after,
        "ceilings": {
            "jetstream_publish_async_msgs_per_s": round(js_rate),
            "postgres_copy_rows_per_s": round(copy_rate),
            "event_store_batched_events_per_s": round(es_rate),
        },
        "targets": {
            "api_under_300_mb": after.get("api", 0) < 300,
            "pathological_refused_as_too_complex": all(
                case["status"] == 422 and case["type"] == "urn:pearl:problem:report-too-complex"
                for case in hostile.values()
            ),
            "pathological_api_growth_under_100_mb": all(
                case["api_peak_rss_mb"] - api_before < 100 for case in hostile.values()
            ),
        },
    }
