"""Bus command handlers: most commands name their target aggregate in the body and call one
Application method with it, the subject's org (which must own the target) and the command's
idempotency; `by_id` builds that handler once instead of one function per command."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, cast
from uuid import UUID

from domain.authz import Principal
from domain.errors import InvalidInput
from domain.kernel import CommandResult, Idempotency
from domain.pearl_app import PearlApp

Handler = Callable[[PearlApp, Principal, str, Any, Idempotency | None, Any], CommandResult]


def uuid_of(value: str | None, field: str) -> UUID:
    """The id a command body gives in `field`, or InvalidInput naming the field."""
    try:
        return UUID(str(value))
    except ValueError:
        raise InvalidInput(f"data.{field} must be an id (UUID)") from None


def by_id(method: str, field: str, *, idempotent: bool = True) -> Handler:
    """`PearlApp.<method>(principal, <id in field>, cmd, [idem=,] org=<subject org>)`."""
    if not callable(getattr(PearlApp, method, None)):
        raise TypeError(f"PearlApp has no command {method!r}")

    def handle(
        app: PearlApp, p: Principal, org: str, cmd: Any, idem: Idempotency | None, _: Any
    ) -> CommandResult:
        target = uuid_of(getattr(cmd, field), field)
        call = getattr(app, method)
        if idempotent:
            return cast(CommandResult, call(p, target, cmd, idem=idem, org=org))
        return cast(CommandResult, call(p, target, cmd, org=org))

    handle.__name__ = method
    return handle
