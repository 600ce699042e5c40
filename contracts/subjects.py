"""The one place NATS subjects and stream names are spelled.

Commands: `<root>.cmd.<org>.<aggregate>.<command>`; events: `<root>.evt.<org>.<aggregate>.<event>`.
The root is `pearl` in production; tests use their own root so runs never collide.
"""

from __future__ import annotations

import re

from msgspec import Struct

DEFAULT_ROOT = "pearl"
_TOKEN = re.compile(r"[A-Za-z0-9_-]+")


def check_token(value: str) -> str:
    """Reject values that would break subject structure (dots, wildcards, spaces)."""
    if not _TOKEN.fullmatch(value):
        raise ValueError(f"{value!r} is not a valid subject token")
    return value


class Subjects(Struct, frozen=True, kw_only=True):
    """Subject and stream names under one root."""

    root: str = DEFAULT_ROOT

    @property
    def events_stream(self) -> str:
        return f"{self.root.upper()}_EVENTS"

    @property
    def commands_stream(self) -> str:
        return f"{self.root.upper()}_COMMANDS"

    @property
    def dlq_stream(self) -> str:
        return f"{self.root.upper()}_DLQ"

    @property
    def reports_bucket(self) -> str:
        """JetStream object store bucket holding raw reports, named by their SHA-256."""
        return f"{self.root}-reports"

    @property
    def locks_bucket(self) -> str:
        """JetStream key-value bucket of leases (e.g. the one active scheduler)."""
        return f"{self.root}-locks"

    @property
    def all_events(self) -> str:
        return f"{self.root}.evt.>"

    @property
    def all_commands(self) -> str:
        return f"{self.root}.cmd.>"

    @property
    def all_dlq(self) -> str:
        return f"{self.root}.dlq.>"

    def command(self, org: str, aggregate: str, command: str) -> str:
        return f"{self.root}.cmd.{check_token(org)}.{aggregate}.{command}"

    def event(self, org: str, aggregate: str, event: str) -> str:
        return f"{self.root}.evt.{check_token(org)}.{aggregate}.{event}"

    def dlq(self, original_subject: str) -> str:
        return f"{self.root}.dlq.{original_subject.removeprefix(self.root + '.')}"

    def parse_command(self, subject: str) -> tuple[str, str, str]:
        """Split a command subject into (org, aggregate, command); ValueError if it is not one."""
        parts = subject.split(".")
        if len(parts) != 5 or parts[0] != self.root or parts[1] != "cmd":
            raise ValueError(f"{subject!r} is not a command subject under {self.root!r}")
        return parts[2], parts[3], parts[4]
