"""Bus handlers for governance commands (entries for `services.commands.ROUTES`).

`pearl.cmd.<org>.version.register|tests.submit|promotion.request|exception.request|
exception.decide|approval.decide|approval.comment` call the same Application methods as HTTP;
the subject's org must be the project's (or request's, exception's) org. The body names what
HTTP takes from the path (`project_id`, `request_id`, `exception_id`). The gate is not
evaluated here: the gatekeeper re-evaluates on the recorded event, as for every other input.
"""

from __future__ import annotations

from typing import Any

from contracts.governance import (
    CommentApproval,
    DecideApproval,
    DecideException,
    RegisterVersion,
    RequestException,
    RequestPromotion,
    SubmitTestResults,
)
from domain.authz import Principal
from domain.pearl_app import CommandResult, Idempotency, PearlApp
from services.target_commands import _uuid


def register_version(
    app: PearlApp, p: Principal, org: str, cmd: RegisterVersion, idem: Idempotency | None, _: Any
) -> CommandResult:
    return app.register_version(p, _uuid(cmd.project_id, "project_id"), cmd, idem, org=org)


def submit_tests(
    app: PearlApp, p: Principal, org: str, cmd: SubmitTestResults, idem: Idempotency | None, _: Any
) -> CommandResult:
    return app.submit_test_results(p, _uuid(cmd.project_id, "project_id"), cmd, idem, org=org)


def request_promotion(
    app: PearlApp, p: Principal, org: str, cmd: RequestPromotion, idem: Idempotency | None, _: Any
) -> CommandResult:
    return app.request_promotion(p, _uuid(cmd.project_id, "project_id"), cmd, idem, org=org)


def request_exception(
    app: PearlApp, p: Principal, org: str, cmd: RequestException, idem: Idempotency | None, _: Any
) -> CommandResult:
    return app.request_exception(p, _uuid(cmd.project_id, "project_id"), cmd, idem, org=org)


def decide_exception(
    app: PearlApp, p: Principal, org: str, cmd: DecideException, idem: Idempotency | None, _: Any
) -> CommandResult:
    return app.decide_exception(p, _uuid(cmd.exception_id, "exception_id"), cmd, idem, org=org)


def decide_approval(
    app: PearlApp, p: Principal, org: str, cmd: DecideApproval, idem: Idempotency | None, _: Any
) -> CommandResult:
    return app.decide_approval(p, _uuid(cmd.request_id, "request_id"), cmd, idem, org=org)


def comment_approval(
    app: PearlApp, p: Principal, org: str, cmd: CommentApproval, idem: Idempotency | None, _: Any
) -> CommandResult:
    return app.comment_approval(p, _uuid(cmd.request_id, "request_id"), cmd, idem, org=org)
