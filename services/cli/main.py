"""`pearl`: run PeaRL (`up`, one process, migrations), parse scans, rebuild read models."""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from domain.errors import PearlError
from services import telemetry
from services.settings import Settings

log = logging.getLogger("pearl.cli")


def _settings(args: argparse.Namespace, *, running: bool = True) -> Settings:
    """Settings from the environment; with `running`, fall back to a running `pearl up`."""
    overrides: dict[str, Any] = {}
    for name in ("host", "port", "home"):
        value = getattr(args, name, None)
        if value is not None:
            overrides[name] = value
    settings = Settings(**overrides)
    if running and not (settings.nats_url and settings.database_url):
        from services.supervisor import read_env_file

        found = read_env_file(settings.home)
        settings = settings.model_copy(
            update={
                "nats_url": settings.nats_url or found.get("NATS_URL"),
                "database_url": settings.database_url or found.get("DATABASE_URL"),
            }
        )
    return settings


def cmd_up(args: argparse.Namespace) -> int:
    from services.supervisor import up

    settings = _settings(args, running=False)
    telemetry.setup("up", settings.log_level, json_logs=False)
    return up(settings)


def cmd_run(args: argparse.Namespace) -> int:
    from services import runtime
    from services.gatekeeper import run_gatekeeper
    from services.scan_jobs import run_scan_jobs
    from services.scheduler import run_scheduler

    settings = _settings(args)
    telemetry.setup(
        args.process, settings.log_level, json_logs=settings.log_json, console=settings.otel_console
    )
    runner = {
        "api": runtime.run_api,
        "relay": runtime.run_relay,
        "projector": runtime.run_projector,
        "worker": runtime.run_worker,
        "scan-jobs": run_scan_jobs,
        "scheduler": run_scheduler,
        "gatekeeper": run_gatekeeper,
    }[args.process]
    asyncio.run(runner(settings))
    return 0


def cmd_mcp(args: argparse.Namespace) -> int:
    import os

    from services.mcp.server import MCP_PORT, run_mcp

    settings = _settings(args)
    stdio = args.transport == "stdio"
    if not stdio and args.token:
        print(
            "pearl: over HTTP every request sends 'Authorization: Bearer <key>'; no --token",
            file=sys.stderr,
        )
        return 2
    # stdout is the protocol in stdio mode: logs go to stderr, spans are never printed.
    telemetry.setup(
        "mcp",
        settings.log_level,
        json_logs=settings.log_json,
        console=settings.otel_console and not stdio,
    )
    token = args.token or os.environ.get("PEARL_API_KEY")
    asyncio.run(run_mcp(settings, args.transport, token=token, port=args.port or MCP_PORT))
    return 0


def cmd_migrate(args: argparse.Namespace) -> int:
    from services.runtime import migrate

    settings = _settings(args)
    telemetry.setup("migrate", settings.log_level, json_logs=False)
    asyncio.run(migrate(settings))
    return 0


def cmd_rebuild(args: argparse.Namespace) -> int:
    from services.rebuild import rebuild_read_models

    settings = _settings(args)
    telemetry.setup("rebuild", settings.log_level, json_logs=False)
    count = asyncio.run(rebuild_read_models(settings, args.name))
    print(f"rebuilt read models from {count} events")
    return 0


def cmd_projections_status(args: argparse.Namespace) -> int:
    from services.readiness import status_lines, status_report

    settings = _settings(args)
    report = asyncio.run(status_report(settings))
    if args.json:
        print(json.dumps(report.body(), indent=2))
    else:
        print("\n".join(status_lines(report)))
    return 1 if report.failures else 0


def cmd_admin_key(args: argparse.Namespace) -> int:
    from services.supervisor import ensure_admin_key

    settings = _settings(args)
    telemetry.setup("admin-key", settings.log_level, json_logs=False)
    path = ensure_admin_key(settings)
    print(f"Admin API key: {path}")
    return 0


def cmd_scan_parse(args: argparse.Namespace) -> int:
    from domain.scanners import parse_report

    with Path(args.file).open("rb") as fh:
        report = parse_report(fh, args.tool)
    out = sys.stdout
    for finding in report.findings:
        out.write(json.dumps(finding.to_dict(), separators=(",", ":")) + "\n")
    return 0


def cmd_scan_ingest(args: argparse.Namespace) -> int:
    from services.cli.client import checked, client

    settings = _settings(args, running=False)
    params = {"target": args.target, "branch": args.branch, "full": str(args.full).lower()}
    if args.commit:
        params["commit"] = args.commit
    if args.tool:
        params["tool"] = args.tool
    with client(settings.home) as http, Path(args.file).open("rb") as fh:
        answer = checked(http.post(f"/v1/projects/{args.project}/scans", params=params, content=fh))
    print(json.dumps(answer, indent=2))
    return 0


def cmd_bench(args: argparse.Namespace) -> int:
    from services.bench import gate, ingest, replay

    telemetry.setup("bench", "WARNING", json_logs=False)
    results = {
        "ingest": lambda: ingest.run(args.findings, args.files),
        "ingest-large": lambda: ingest.run_large(args.megabytes),
        "replay": lambda: replay.run(args.events),
        "gate": lambda: gate.run(args.findings, args.exceptions, args.runs),
    }[args.name]()
    text = json.dumps(results, indent=2)
    print(text)
    out = Path(args.output or f"bench-results/{args.name}.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text + "\n")
    return 0


def cmd_token(args: argparse.Namespace) -> int:
    from services.auth import mint_hs256
    from services.supervisor import ensure_jwt_secret

    settings = _settings(args, running=False)
    secret = settings.jwt_secret or ensure_jwt_secret(settings.home)
    token = mint_hs256(
        secret,
        sub=args.sub,
        org=args.org,
        roles=args.roles,
        audience=settings.jwt_audience,
        ttl_seconds=args.ttl,
    )
    print(token)
    return 0


def cmd_audit_verify(args: argparse.Namespace) -> int:
    from services import audit_cli

    if args.from_export:
        with Path(args.from_export).open() as fh:
            checked, problem = audit_cli.verify_export(iter(fh), args.public_key)
    else:
        from services.runtime import build_app

        settings = _settings(args)
        _, database_url = settings.require_urls()
        app = build_app(settings)
        try:
            covered = audit_cli.coverage(app, database_url, args.wait)
            checked, bad = audit_cli.verify_store(app, database_url, args.org, args.public_key)
        finally:
            app.close()
        problem = None if bad is None else f"first bad entry at position {bad}"
        if problem is None and covered.behind:
            print(
                f"audit chain BEHIND the event store by {covered.behind} events: positions"
                f" {covered.checkpoint + 1}..{covered.head} are not chained yet (after waiting"
                f" {args.wait:g}s; see `pearl projections status`); the {checked} entries"
                f" chained up to position {covered.checkpoint} verify"
            )
            return 3
    if problem:
        print(f"audit chain BROKEN after {checked} good entries: {problem}")
        return 1
    print(f"audit chain intact: {checked} entries verified")
    return 0


def cmd_audit_checkpoint(args: argparse.Namespace) -> int:
    from services import audit_cli
    from services.runtime import build_app

    settings = _settings(args)
    _, database_url = settings.require_urls()
    app = build_app(settings)
    try:
        signed = audit_cli.sign_checkpoints(
            app, database_url, audit_cli.signing_key(settings.home), args.org
        )
    finally:
        app.close()
    for org, seq in signed:
        print(f"signed {org} at entry {seq}")
    return 0


def cmd_audit_export(args: argparse.Namespace) -> int:
    from services import audit_cli
    from services.runtime import build_app

    settings = _settings(args)
    app = build_app(settings)
    key = audit_cli.signing_key(settings.home)
    try:
        if args.output in (None, "-"):
            count = audit_cli.export(app, args.org, sys.stdout, key, args.since, args.until)
        else:
            with Path(args.output).open("w") as out:
                count = audit_cli.export(app, args.org, out, key, args.since, args.until)
    finally:
        app.close()
    print(f"exported {count} entries", file=sys.stderr)
    return 0


def cmd_schemas(args: argparse.Namespace) -> int:
    from contracts.docs_text import render
    from contracts.schemas import asyncapi, event_schemas, policy_schema

    out = Path(args.output)
    out.mkdir(parents=True, exist_ok=True)
    for name, doc in (
        ("events.schema.json", event_schemas()),
        ("policy.schema.json", policy_schema()),
        ("asyncapi.json", asyncapi()),
    ):
        (out / name).write_text(render(doc))
    return 0


def cmd_openapi(args: argparse.Namespace) -> int:
    from contracts.docs_text import render
    from services.api.openapi import openapi_document

    text = render(openapi_document())
    if args.output == "-":
        sys.stdout.write(text)
    else:
        Path(args.output).write_text(text)
    return 0


def cmd_vex_export(args: argparse.Namespace) -> int:
    from services.cli.vex import cmd_vex_export as export

    return export(args)


def cmd_policy_apply(args: argparse.Namespace) -> int:
    from services.cli.governance import policy_apply

    return policy_apply(args, _settings(args, running=False).home)


def cmd_gate_evaluate(args: argparse.Namespace) -> int:
    from services.cli.governance import gate_evaluate

    return gate_evaluate(args, _settings(args, running=False).home)


def cmd_replay_decision(args: argparse.Namespace) -> int:
    from services.cli.governance import replay_decision

    return replay_decision(args, _settings(args, running=False).home)


def cmd_approval_list(args: argparse.Namespace) -> int:
    from services.cli.governance import approval_list

    return approval_list(args, _settings(args, running=False).home)


def cmd_approval_decide(args: argparse.Namespace) -> int:
    from services.cli.governance import approval_decide

    return approval_decide(args, _settings(args, running=False).home)


def cmd_policy_validate(args: argparse.Namespace) -> int:
    from services.cli.policy import cmd_policy_validate as validate

    return validate(args)


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="pearl", description="PeaRL governance service")
    sub = p.add_subparsers(dest="command", required=True)

    up = sub.add_parser("up", help="start everything (embedded NATS/PostgreSQL if not configured)")
    up.add_argument("--host")
    up.add_argument("--port", type=int)
    up.add_argument("--home", type=Path, help="data directory (default ./.pearl)")
    up.set_defaults(func=cmd_up)

    run = sub.add_parser("run", help="run one process against NATS_URL and DATABASE_URL")
    run.add_argument(
        "process",
        choices=["api", "relay", "projector", "worker", "scan-jobs", "scheduler", "gatekeeper"],
    )
    run.add_argument("--host")
    run.add_argument("--port", type=int)
    run.set_defaults(func=cmd_run)

    mcp = sub.add_parser(
        "mcp", help="serve the Model Context Protocol to coding agents (stdio or HTTP)"
    )
    mcp.add_argument(
        "--transport",
        choices=["stdio", "http"],
        default="stdio",
        help="stdio: one agent, its key in PEARL_API_KEY; http: streamable HTTP at /mcp, "
        "each request with 'Authorization: Bearer <key>'",
    )
    mcp.add_argument("--host", help="HTTP: the address to listen on (default 127.0.0.1)")
    mcp.add_argument("--port", type=int, help="HTTP: the port to listen on (default 8765)")
    mcp.add_argument(
        "--token", help="stdio: the agent's API key (prefer the PEARL_API_KEY environment)"
    )
    mcp.set_defaults(func=cmd_mcp)

    mig = sub.add_parser("migrate", help="create the event store, read models and streams")
    mig.set_defaults(func=cmd_migrate)

    key = sub.add_parser("admin-key", help="create the bootstrap admin key file if missing")
    key.add_argument("--home", type=Path)
    key.set_defaults(func=cmd_admin_key)

    proj = sub.add_parser("projections", help="read-model maintenance")
    proj_sub = proj.add_subparsers(dest="action", required=True)
    reb = proj_sub.add_parser("rebuild", help="rebuild every read model from the event store")
    reb.add_argument("--name", action="append", help="only this read model (repeatable)")
    reb.set_defaults(func=cmd_rebuild)
    pst = proj_sub.add_parser(
        "status",
        help="each checkpoint, the store head, the lag and any failure (exit 1 while one fails)",
    )
    pst.add_argument("--json", action="store_true", help="the /ready report as JSON")
    pst.set_defaults(func=cmd_projections_status)

    scan = sub.add_parser("scan", help="scanner reports")
    scan_sub = scan.add_subparsers(dest="action", required=True)
    parse = scan_sub.add_parser("parse", help="print normalized findings as JSON Lines")
    parse.add_argument("file")
    parse.add_argument("--tool", help="force a format instead of auto-detecting")
    parse.set_defaults(func=cmd_scan_parse)
    ingest = scan_sub.add_parser("ingest", help="submit a report to the API of a running PeaRL")
    ingest.add_argument("file")
    ingest.add_argument("--project", required=True, help="project id")
    ingest.add_argument("--tool", help="force a format instead of auto-detecting")
    ingest.add_argument("--target", default="default", help="what was scanned (scope)")
    ingest.add_argument("--branch", default="main")
    ingest.add_argument("--commit", help="the git commit the report scanned")
    ingest.add_argument(
        "--full",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="a full scan fixes findings of its scope it no longer reports",
    )
    ingest.set_defaults(func=cmd_scan_ingest)

    bench = sub.add_parser("bench", help="benchmarks (print figures and write JSON)")
    bench.add_argument("name", choices=["ingest", "ingest-large", "replay", "gate"])
    bench.add_argument("--events", type=int, default=1_000_000, help="store size (replay)")
    bench.add_argument("--megabytes", type=int, default=100, help="report size (ingest-large)")
    bench.add_argument("--findings", type=int, default=10_000)
    bench.add_argument("--files", type=int, default=2_000)
    bench.add_argument("--exceptions", type=int, default=200, help="approved exceptions (gate)")
    bench.add_argument("--runs", type=int, default=200, help="evaluations measured (gate)")
    bench.add_argument("--output", help="JSON file (default bench-results/<name>.json)")
    bench.set_defaults(func=cmd_bench)

    tok = sub.add_parser("token", help="mint an HS256 JWT for a person (embedded default)")
    tok.add_argument("--sub", required=True, help="who (subject)")
    tok.add_argument("--org", required=True)
    tok.add_argument("--roles", nargs="+", required=True)
    tok.add_argument("--ttl", type=int, default=3600, help="seconds")
    tok.set_defaults(func=cmd_token)

    vex = sub.add_parser("vex", help="VEX documents of a project's triage")
    vex_sub = vex.add_subparsers(dest="action", required=True)
    vexp = vex_sub.add_parser("export", help="export findings as OpenVEX or CycloneDX VEX")
    vexp.add_argument("--project", required=True, help="project id")
    vexp.add_argument("--format", choices=["openvex", "cyclonedx"], default="openvex")
    vexp.add_argument("--author", help="document author (default: the project's org)")
    vexp.add_argument("--output", "-o", help="file to write (default: stdout)")
    vexp.add_argument("--home", type=Path, help="data directory of a running `pearl up`")
    vexp.set_defaults(func=cmd_vex_export)

    aud = sub.add_parser("audit", help="verify or export the hash-chained audit trail")
    aud_sub = aud.add_subparsers(dest="action", required=True)
    ver = aud_sub.add_parser(
        "verify",
        help="exit 0 when the chain is intact and covers the whole store, 1 naming the first bad"
        " position, 3 when it is intact but behind the event store (saying by how much)",
    )
    ver.add_argument(
        "--wait",
        type=float,
        default=10.0,
        help="seconds to wait for the chain to reach the store head (default 10)",
    )
    ver.add_argument("--org")
    ver.add_argument("--from-export", help="verify an export file offline instead")
    ver.add_argument("--public-key", help="base64 Ed25519 key the checkpoint must be signed by")
    ver.set_defaults(func=cmd_audit_verify)
    chk = aud_sub.add_parser("checkpoint", help="sign each org's chain head (run periodically)")
    chk.add_argument("--org")
    chk.set_defaults(func=cmd_audit_checkpoint)
    exp = aud_sub.add_parser("export", help="CloudEvents JSON Lines plus a signed checkpoint")
    exp.add_argument("--org", required=True)
    exp.add_argument("--since", help="ISO time (inclusive)")
    exp.add_argument("--until", help="ISO time (exclusive)")
    exp.add_argument("--output", "-o")
    exp.set_defaults(func=cmd_audit_export)

    pol = sub.add_parser("policy", help="gate policy documents (YAML or JSON)")
    pol_sub = pol.add_subparsers(dest="action", required=True)
    polv = pol_sub.add_parser("validate", help="check a policy file; exit 2 listing every error")
    polv.add_argument("file", help="policy file, or - for stdin")
    polv.set_defaults(func=cmd_policy_validate)
    pola = pol_sub.add_parser("apply", help="apply a policy file (a no-op when unchanged)")
    pola.add_argument("file", help="policy file, or - for stdin")
    pola.add_argument("--env", required=True, help="the environment the policy gates")
    pola.add_argument("--project", help="project id (its own policy)")
    pola.add_argument("--org", help="org slug (the org baseline)")
    pola.add_argument("--reason", required=True, help="why (recorded with the version)")
    pola.set_defaults(func=cmd_policy_apply)
    gate = sub.add_parser("gate", help="promotion gates")
    gate_sub = gate.add_subparsers(dest="action", required=True)
    gate_eval = gate_sub.add_parser(
        "evaluate", help="evaluate the gate into an environment; exit 0 passed, 1 otherwise"
    )
    gate_eval.add_argument("--project", required=True, help="project id")
    gate_eval.add_argument("--to", required=True, help="target environment")
    gate_eval.add_argument("--version", help="request a promotion of this version if none is open")
    gate_eval.add_argument("--json", action="store_true", help="print the explanation as JSON")
    gate_eval.set_defaults(func=cmd_gate_evaluate)
    replay = sub.add_parser("replay", help="re-run recorded decisions from the event store")
    replay_sub = replay.add_subparsers(dest="what", required=True)
    replay_dec = replay_sub.add_parser(
        "decision", help="re-run a gate decision as of its time; exit 0 when it matches"
    )
    replay_dec.add_argument("decision", help="decision id")
    replay_dec.add_argument("--promotion", help="its promotion id (looked up when omitted)")
    replay_dec.set_defaults(func=cmd_replay_decision)
    appr = sub.add_parser("approval", help="approval requests of promotions")
    appr_sub = appr.add_subparsers(dest="action", required=True)
    appr_list = appr_sub.add_parser("list", help="a project's approval requests")
    appr_list.add_argument("--project", required=True, help="project id")
    appr_list.add_argument(
        "--status", choices=["pending", "approved", "rejected", "expired", "voided"]
    )
    appr_list.add_argument("--json", action="store_true", help="print the requests as JSON")
    appr_list.set_defaults(func=cmd_approval_list)
    appr_dec = appr_sub.add_parser(
        "decide", help="approve or reject a request; its promotion's gate is evaluated again"
    )
    appr_dec.add_argument("request", help="approval request id")
    appr_dec.add_argument("decision", choices=["approve", "reject"])
    appr_dec.add_argument("--reason", default="", help="why (required to reject)")
    appr_dec.add_argument("--json", action="store_true", help="print the answer as JSON")
    appr_dec.set_defaults(func=cmd_approval_decide)

    sch = sub.add_parser(
        "schemas", help="write event and policy JSON Schemas and the AsyncAPI document"
    )
    sch.add_argument("--output", default="docs/schemas")
    sch.set_defaults(func=cmd_schemas)

    oa = sub.add_parser("openapi", help="write the OpenAPI document")
    oa.add_argument("--output", default="-")
    oa.set_defaults(func=cmd_openapi)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        code: int = args.func(args)
    except PearlError as exc:
        print(f"pearl: {exc.detail}", file=sys.stderr)
        return 2
    except BrokenPipeError:  # `pearl scan parse … | head`: the reader has what it wanted
        # Python flushes stdout again at exit: point it at /dev/null so that raises nothing
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except (OSError, ValueError, RuntimeError) as exc:
        print(f"pearl: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    return code


if __name__ == "__main__":
    sys.exit(main())
