"""Command bodies for agents: registration, autonomy levels and the kill switch (HTTP and NATS)."""

from __future__ import annotations

from typing import Annotated, Literal

from msgspec import Meta, field

from contracts.commands import Command, Name, Slug
from contracts.text import PROSE

#: What an agent may do alone in an environment, least to most.
AutonomyLevel = Literal["none", "observe", "propose", "act"]
#: An environment name, or `*` for every environment not named (and for work with none, tasks).
Scope = Annotated[str, Meta(pattern=r"^(\*|[a-z0-9][a-z0-9-]{0,31})(?![\s\S])")]
Capability = Annotated[str, Meta(pattern=r"^[a-z0-9][a-z0-9._-]{0,63}(?![\s\S])")]
Reason = Annotated[str, PROSE, Meta(min_length=1, max_length=2000)]


class RegisterAgent(Command, kw_only=True, forbid_unknown_fields=True, frozen=True):
    """A coding agent of the org: who owns it, what it can do, and how far it may go alone.

    `autonomy` maps environments (or `*`) to a level; unnamed environments take `*`,
    which defaults to `observe` (read only) until someone grants more.
    """

    slug: Slug
    name: Name
    owner: Name
    capabilities: Annotated[list[Capability], Meta(max_length=50)] = []
    autonomy: Annotated[dict[Scope, AutonomyLevel], Meta(max_length=20)] = field(
        default_factory=lambda: {"*": "observe"}
    )


class SetAutonomy(Command, kw_only=True, forbid_unknown_fields=True, frozen=True):
    """Change an agent's level in one environment (or `*`), with the reason for the record."""

    environment: Scope = "*"
    level: AutonomyLevel
    reason: Reason


class PauseAgent(Command, kw_only=True, forbid_unknown_fields=True, frozen=True):
    """The kill switch: every action refused from now on; held task leases are released."""

    reason: Reason


class ResumeAgent(Command, kw_only=True, forbid_unknown_fields=True, frozen=True):
    reason: Reason
