"""The ApiKey aggregate: a credential of one org, stored only as a salted hash."""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any
from uuid import UUID

from eventsourcing.domain import event

from domain.base import PearlAggregate, stable_id
from domain.errors import Conflict, Unauthenticated

if TYPE_CHECKING:
    from contracts.commands import IssueApiKey

KEY_PREFIX = "pk_"
_KEY_ID_LEN = 16


@dataclass(frozen=True, slots=True)
class NewKey:
    """A freshly generated key: the secret is shown once, only the digest is stored."""

    org: str
    key_id: str
    secret: str
    salt: str

    @property
    def token(self) -> str:
        return f"{KEY_PREFIX}{self.org}_{self.key_id}{self.secret}"

    @property
    def digest(self) -> str:
        return key_digest(self.salt, self.token)


def generate_key(org: str) -> NewKey:
    return NewKey(org, secrets.token_hex(8), secrets.token_hex(24), secrets.token_hex(16))


def key_digest(salt: str, token: str) -> str:
    """Salted HMAC-SHA256; keys carry 192 random bits, so a slow KDF buys nothing here."""
    return hmac.new(bytes.fromhex(salt), token.encode(), hashlib.sha256).hexdigest()


def split_token(token: str) -> tuple[str, str]:
    """(org, key_id) of a `pk_<org>_<random>` token, or Unauthenticated if it is not one."""
    if not token.startswith(KEY_PREFIX):
        raise Unauthenticated("malformed API key")
    org, sep, rest = token[len(KEY_PREFIX) :].partition("_")
    if not sep or not org or len(rest) <= _KEY_ID_LEN:
        raise Unauthenticated("malformed API key")
    return org, rest[:_KEY_ID_LEN]


def api_key_id(key_id: str) -> UUID:
    return stable_id("apikey", key_id)


class ApiKey(PearlAggregate):
    """An API key with roles and an optional expiry; revocation is an event."""

    @staticmethod
    def create_id(key_id: str, **_: Any) -> UUID:
        return api_key_id(key_id)

    @event("Issued")
    def __init__(
        self,
        org: str,
        key_id: str,
        name: str,
        roles: list[str],
        salt: str,
        digest: str,
        expires_at: str | None,
        actor: str,
    ) -> None:
        self.org = org
        self.key_id = key_id
        self.name = name
        self.roles = list(roles)
        self.salt = salt
        self.digest = digest
        self.expires_at = expires_at
        self.revoked = False
        self.last_used_at: str | None = None
        self.agent: str | None = None

    def bind_agent(self, agent: str, actor: str) -> None:
        """Make this the credential of a registered agent (in the save that issues it)."""
        self._agent_bound(agent=agent, actor=actor)

    @event("AgentBound")
    def _agent_bound(self, agent: str, actor: str) -> None:
        self.agent = agent

    def matches(self, token: str) -> bool:
        return hmac.compare_digest(self.digest, key_digest(self.salt, token))

    def revoke(self, reason: str, actor: str) -> None:
        if self.revoked:
            raise Conflict(f"API key {self.key_id} is already revoked")
        self._revoked(reason=reason, actor=actor)

    @event("Revoked")
    def _revoked(self, reason: str, actor: str) -> None:
        self.revoked = True

    def use(self, at: str) -> None:
        """Note that the key was used (recorded at most hourly by the API, never per request)."""
        self._used(at=at, actor=f"service:{self.key_id}")

    @event("Used")
    def _used(self, at: str, actor: str) -> None:
        self.last_used_at = at


def mint_key(
    org: str, cmd: IssueApiKey, actor: str, clock: Callable[[], datetime]
) -> tuple[ApiKey, str]:
    """A new key aggregate (unsaved) and its token, which exists only in this answer."""
    new = generate_key(org)
    expires = cmd.expires_in_days and (clock() + timedelta(days=cmd.expires_in_days))
    key = ApiKey(
        org=org,
        key_id=new.key_id,
        name=cmd.name,
        roles=list(cmd.roles),
        salt=new.salt,
        digest=new.digest,
        expires_at=expires.isoformat() if expires else None,
        actor=actor,
    )
    return key, new.token
