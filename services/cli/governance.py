"""Governance from the command line, over the HTTP API (so the same checks apply):

- `pearl policy apply FILE --env E (--project ID | --org O) --reason R` (idempotent)
- `pearl gate evaluate --project ID --to ENV [--version V]`: request (or re-evaluate) the
  promotion into ENV and print the explanation; exit 0 when the gate passed, 1 otherwise,
  so a CI job can use it as a step
- `pearl replay decision ID`: re-run a recorded gate decision from the event store
- `pearl approval list --project ID [--status S]`: a project's approval requests
- `pearl approval decide ID approve|reject [--reason R]`: decide one; the promotion's gate is
  evaluated again (printed)
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from domain.policy import policy_as_dict
from services.cli.client import ApiProblem, checked, client
from services.cli.policy import read_policy_file


def policy_apply(args: argparse.Namespace, home: Path) -> int:
    """Validate locally (with line numbers), then send the document; the same one is a no-op."""
    document = read_policy_file(str(args.file))
    if document is None:
        return 2
    if bool(args.project) == bool(args.org):
        print("pearl: give exactly one of --project (its policy) or --org (the baseline)")
        return 2
    path = (
        f"/v1/projects/{args.project}/policies/{args.env}"
        if args.project
        else f"/v1/orgs/{args.org}/policies/{args.env}"
    )
    body = {"policy": policy_as_dict(document), "reason": args.reason}
    with client(home) as http:
        try:
            answer = checked(http.put(path, json=body))
        except ApiProblem as exc:
            print(f"pearl: {exc.detail}", file=sys.stderr)
            return 2
    state = "applied" if answer.get("changed") else "unchanged"
    print(f"{state}: {args.env} policy version {answer['version']} ({answer['digest']})")
    return 0


def gate_evaluate(args: argparse.Namespace, home: Path) -> int:
    with client(home) as http:
        try:
            promotion_id = _open_promotion(http, args)
            if promotion_id is None:
                return 2
            explained = checked(http.get(f"/v1/promotions/{promotion_id}/explain"))
        except ApiProblem as exc:
            print(f"pearl: {exc.detail}", file=sys.stderr)
            return 2
    if args.json:
        print(json.dumps(explained, indent=2))
    else:
        print(f"promotion {promotion_id}")
        print(explained["text"])
    return 0 if explained["result"] == "passed" else 1


def _open_promotion(http: Any, args: argparse.Namespace) -> str | None:
    """The open promotion into `--to` (re-evaluated now), or a new one of `--version`."""
    project = args.project
    found = checked(http.get(f"/v1/projects/{project}/environments", params={"min_position": 0}))[
        "items"
    ]
    env = next((e for e in found if e.get("name") == args.to), None)
    pending = env.get("pending_promotion_id") if env else None
    if pending:
        checked(http.post(f"/v1/promotions/{pending}/evaluate"))
        return str(pending)
    if not args.version:
        print(f"pearl: no open promotion into {args.to!r}; give --version to request one")
        return None
    answer = checked(
        http.post(
            f"/v1/projects/{project}/promotions", json={"version": args.version, "to": args.to}
        )
    )
    if not answer.get("gate"):
        checked(http.post(f"/v1/promotions/{answer['id']}/evaluate"))
    return str(answer["id"])


def replay_decision(args: argparse.Namespace, home: Path) -> int:
    with client(home) as http:
        try:
            promotion = args.promotion or _promotion_of_decision(http, args.decision)
            answer = checked(
                http.get(f"/v1/promotions/{promotion}/decisions/{args.decision}/replay")
            )
        except ApiProblem as exc:
            print(f"pearl: {exc.detail}", file=sys.stderr)
            return 2
    print(json.dumps(answer, indent=2))
    verdict = "MATCHES" if answer["matches"] else "DIFFERS"
    print(
        f"{verdict}: recorded {answer['recorded']['result']} {answer['recorded']['inputs_digest']}"
        f" / replayed {answer['replayed']['result']} {answer['replayed']['inputs_digest']}",
        file=sys.stderr,
    )
    return 0 if answer["matches"] else 1


def _promotion_of_decision(http: Any, decision: str) -> str:
    return str(checked(http.get(f"/v1/decisions/{decision}"))["promotion_id"])


def approval_list(args: argparse.Namespace, home: Path) -> int:
    params = {"status": args.status} if args.status else None
    with client(home) as http:
        try:
            answer = checked(http.get(f"/v1/projects/{args.project}/approvals", params=params))
        except ApiProblem as exc:
            print(f"pearl: {exc.detail}", file=sys.stderr)
            return 2
    items = answer["items"]
    if args.json:
        print(json.dumps(items, indent=2))
        return 0
    for item in items:
        print(
            f"{item['id']}  {item['status']:<8}  {item['approvals']}/{item['required_count']}"
            f"  {item['environment']}  {item['version']}  promotion {item['promotion_id']}"
        )
    return 0


def approval_decide(args: argparse.Namespace, home: Path) -> int:
    """Approve or reject a request; the answer carries the gate decision taken right after."""
    body = {"decision": args.decision, "reason": args.reason}
    with client(home) as http:
        try:
            answer = checked(http.post(f"/v1/approvals/{args.request}/decisions", json=body))
        except ApiProblem as exc:
            print(f"pearl: {exc.detail}", file=sys.stderr)
            return 2
    if args.json:
        print(json.dumps(answer, indent=2))
        return 0
    gate = answer.get("gate") or {}
    verdict = f"gate {gate['result']}" if gate.get("result") else "gate pending re-evaluation"
    print(
        f"{answer['status']}: approval request {answer['id']} "
        f"({answer['approvals']}/{answer['required']} approvals); "
        f"promotion {answer['promotion_id']}: {verdict}"
    )
    return 0
