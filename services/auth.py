"""Credentials to principals: API keys (event store) and JWT bearer tokens (HS256 or JWKS)."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

import jwt
from jwt import PyJWKClient

from domain.authz import Principal, Role
from domain.errors import Unauthenticated
from domain.pearl_app import PearlApp
from services.settings import Settings

log = logging.getLogger(__name__)
ASYMMETRIC = ["RS256", "RS384", "RS512", "ES256", "ES384", "PS256"]


def looks_like_jwt(token: str) -> bool:
    return token.count(".") == 2 and not token.startswith("pk_")


@dataclass
class Authenticator:
    """One place that turns a bearer credential into a Principal, for HTTP, NATS and MCP."""

    settings: Settings
    app: PearlApp
    _jwks: PyJWKClient | None = field(default=None, init=False)

    def __post_init__(self) -> None:
        if self.settings.jwt_jwks_url:
            self._jwks = PyJWKClient(
                self.settings.jwt_jwks_url,
                cache_keys=True,
                lifespan=300,
                cooldown_duration=self.settings.jwt_jwks_refresh_cooldown_seconds,
            )

    def authenticate(self, token: str) -> Principal:
        """Blocking (JWKS fetch, event store read): call it from a worker thread."""
        if looks_like_jwt(token):
            return self.from_jwt(token)
        return self.app.authenticate(token)

    def _key_and_algorithms(self, token: str) -> tuple[Any, list[str]]:
        header = jwt.get_unverified_header(token)
        algorithm = header.get("alg", "")
        if algorithm == "HS256" and self.settings.jwt_secret:
            return self.settings.jwt_secret, ["HS256"]
        if algorithm in ASYMMETRIC and self._jwks is not None:
            return self._jwks.get_signing_key_from_jwt(token).key, [algorithm]
        raise Unauthenticated(f"tokens signed with {algorithm or 'no algorithm'} are not accepted")

    def from_jwt(self, token: str) -> Principal:
        s = self.settings
        try:
            key, algorithms = self._key_and_algorithms(token)
            claims = jwt.decode(
                token,
                key,
                algorithms=algorithms,
                audience=s.jwt_audience,
                issuer=s.jwt_issuer or None,
                leeway=s.jwt_leeway_seconds,
                options={"require": ["exp", "sub", "aud"]},
            )
        except jwt.ExpiredSignatureError:
            raise Unauthenticated("token expired") from None
        except jwt.InvalidAudienceError:
            raise Unauthenticated("token has the wrong audience") from None
        except jwt.InvalidIssuerError:
            raise Unauthenticated("token has the wrong issuer") from None
        except jwt.InvalidSignatureError:
            raise Unauthenticated("token signature is invalid") from None
        except (jwt.PyJWTError, ValueError) as exc:
            raise Unauthenticated(f"invalid token: {type(exc).__name__}") from None
        org = claims.get(s.jwt_org_claim)
        if not isinstance(org, str) or not org:
            raise Unauthenticated(f"token has no {s.jwt_org_claim!r} claim")
        raw_roles = claims.get(s.jwt_roles_claim) or []
        roles = frozenset(Role(r) for r in raw_roles if r in Role.__members__.values())
        if not roles:
            raise Unauthenticated("token grants no PeaRL role")
        kind = "agent" if Role.AGENT in roles else "human"
        subject = str(claims["sub"])[:200]
        # An agent's token names the registered agent (`agent` claim, else its subject).
        grant = (
            self.app.agent_grant(org, str(claims.get("agent") or subject))
            if kind == "agent"
            else None
        )
        return Principal(
            id=subject,
            org=org,
            roles=roles,
            kind=kind,
            name=str(claims.get("name", ""))[:200],
            credential="jwt",
            agent=grant,
        )


def mint_hs256(
    secret: str,
    *,
    sub: str,
    org: str,
    roles: list[str],
    audience: str,
    ttl_seconds: int = 3600,
    issuer: str | None = None,
) -> str:
    """A development token for the embedded default (`pearl token`)."""
    import time

    now = int(time.time())
    claims: dict[str, Any] = {
        "sub": sub,
        "org": org,
        "roles": roles,
        "aud": audience,
        "iat": now,
        "exp": now + ttl_seconds,
    }
    if issuer:
        claims["iss"] = issuer
    return jwt.encode(claims, secret, algorithm="HS256")
