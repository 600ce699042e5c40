"""Authentication, limits and hardening on the HTTP path, against the real stores."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import http.server
import io
import json
import logging
import threading
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa

from services.api.app import create_app
from services.api.context import ApiContext
from services.auth import mint_hs256
from services.telemetry import JsonFormatter
from tests.support.helpers import eventually, finding_body, issue_key, make_org_and_project
from tests.support.stack import Stack

pytestmark = pytest.mark.integration
SECRET = "test-hs256-secret-with-enough-entropy-0123456789"


@contextlib.asynccontextmanager
async def api_with(stack: Stack, **overrides: Any) -> AsyncIterator[httpx.AsyncClient]:
    """The same stores behind an API built with other settings (limits, JWT keys)."""
    settings = stack.settings.model_copy(update=overrides)
    pool = stack.http._transport.app.state.ctx.pool  # type: ignore[attr-defined]
    ctx = ApiContext(settings=settings, pearl=stack.app, pool=pool, nc=stack.nc)
    transport = httpx.ASGITransport(app=create_app(ctx))
    async with httpx.AsyncClient(transport=transport, base_url="http://pearl.test") as client:
        yield client


def _b64(n: int) -> str:
    raw = n.to_bytes((n.bit_length() + 7) // 8, "big")
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def jwk(key: rsa.RSAPrivateKey, kid: str) -> dict[str, str]:
    pub = key.public_key().public_numbers()
    return {
        "kty": "RSA",
        "kid": kid,
        "use": "sig",
        "alg": "RS256",
        "n": _b64(pub.n),
        "e": _b64(pub.e),
    }


@contextlib.contextmanager
def jwks_server(keys: list[dict[str, str]]) -> Iterator[str]:
    """A local JWKS endpoint (loopback only); `keys` may be changed to rotate."""

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            body = json.dumps({"keys": keys}).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: Any) -> None:
            return

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}/jwks.json"
    finally:
        server.shutdown()


def rs256(key: rsa.RSAPrivateKey, kid: str, **claims: Any) -> str:
    now = int(time.time())
    body = {
        "sub": "alice",
        "aud": "pearl",
        "iss": "https://idp.test",
        "iat": now,
        "exp": now + 300,
        **claims,
    }
    return jwt.encode(body, key, algorithm="RS256", headers={"kid": kid})


async def test_hs256_token_acts_as_its_org_and_roles(stack: Stack):
    org, project, _ = await make_org_and_project(stack.http, stack.admin)
    async with api_with(stack, jwt_secret=SECRET) as api:
        token = mint_hs256(SECRET, sub="alice", org=org, roles=["operator"], audience="pearl")
        r = await api.get("/v1/whoami", headers={"Authorization": f"Bearer {token}"})
        assert r.json() == {
            "id": "alice",
            "org": org,
            "roles": ["operator"],
            "kind": "human",
            "name": "",
        }
        r = await api.post(
            f"/v1/projects/{project}/findings",
            json=finding_body(),
            headers={"Authorization": f"Bearer {token}"},
        )
        assert r.status_code == 201


@pytest.mark.parametrize(
    ("make", "reason"),
    [
        (
            lambda o: mint_hs256(
                SECRET, sub="a", org=o, roles=["viewer"], audience="pearl", ttl_seconds=-120
            ),
            "expired",
        ),
        (
            lambda o: mint_hs256(SECRET, sub="a", org=o, roles=["viewer"], audience="other"),
            "audience",
        ),
        (
            lambda o: mint_hs256(
                "another-secret-of-sufficient-length-xyz",
                sub="a",
                org=o,
                roles=["viewer"],
                audience="pearl",
            ),
            "signature",
        ),
        (lambda o: "eyJhbGciOiJIUzI1NiJ9.not-json.sig", "invalid"),
        (
            lambda o: jwt.encode(
                {
                    "sub": "a",
                    "org": o,
                    "roles": ["viewer"],
                    "aud": "pearl",
                    "exp": int(time.time()) + 60,
                },
                key="",
                algorithm="none",
            ),
            "not accepted",
        ),
        (
            lambda o: mint_hs256(SECRET, sub="a", org=o, roles=["emperor"], audience="pearl"),
            "no PeaRL role",
        ),
    ],
    ids=["expired", "wrong-audience", "wrong-signature", "malformed", "alg-none", "no-role"],
)
async def test_bad_tokens_are_refused_with_401(stack: Stack, make: Any, reason: str):
    async with api_with(stack, jwt_secret=SECRET) as api:
        r = await api.get("/v1/whoami", headers={"Authorization": f"Bearer {make('acme')}"})
    assert r.status_code == 401
    assert r.headers["content-type"].startswith("application/problem+json")
    assert reason in r.json()["detail"]


async def test_rs256_tokens_from_jwks_follow_key_rotation_by_kid(stack: Stack):
    first = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    second = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    keys = [jwk(first, "k1")]
    with jwks_server(keys) as url:
        async with api_with(
            stack,
            jwt_jwks_url=url,
            jwt_issuer="https://idp.test",
            jwt_jwks_refresh_cooldown_seconds=0.2,
        ) as api:
            ok = rs256(first, "k1", org="acme", roles=["viewer"])
            r = await api.get("/v1/whoami", headers={"Authorization": f"Bearer {ok}"})
            assert r.status_code == 200, r.text
            keys.append(jwk(second, "k2"))  # the issuer rotates in a new key
            await asyncio.sleep(0.3)  # unknown kids refetch the key set at most once per cooldown
            rotated = rs256(second, "k2", org="acme", roles=["auditor"])
            r = await api.get("/v1/whoami", headers={"Authorization": f"Bearer {rotated}"})
            assert r.status_code == 200
            assert r.json()["roles"] == ["auditor"]
            forged = rs256(second, "k1", org="acme", roles=["admin"])  # wrong key for kid
            assert (
                await api.get("/v1/whoami", headers={"Authorization": f"Bearer {forged}"})
            ).status_code == 401
            wrong_iss = rs256(first, "k1", org="acme", roles=["viewer"], iss="https://evil")
            assert (
                await api.get("/v1/whoami", headers={"Authorization": f"Bearer {wrong_iss}"})
            ).status_code == 401


async def test_requests_over_the_rate_limit_get_429_with_retry_after(stack: Stack):
    async with api_with(stack, rate_limit_per_minute=5) as api:
        codes = [(await api.get("/v1/whoami", headers=stack.admin)).status_code for _ in range(7)]
        assert codes[:5] == [200] * 5
        assert codes[5] == 429
    async with api_with(stack, rate_limit_per_minute=5) as api:
        for _ in range(5):
            await api.get("/v1/whoami", headers=stack.admin)
        r = await api.get("/v1/whoami", headers=stack.admin)
        assert r.json()["type"] == "urn:pearl:problem:rate-limited"
        assert int(r.headers["Retry-After"]) >= 1


async def test_guessing_keys_is_rate_limited_even_for_a_correct_key_afterwards(stack: Stack):
    async with api_with(stack, auth_failures_per_minute=5) as api:
        for i in range(5):
            bad = {"Authorization": f"Bearer pk_acme_{i:016d}deadbeefdeadbeefdeadbeef"}
            assert (await api.get("/v1/whoami", headers=bad)).status_code == 401
        r = await api.get("/v1/whoami", headers=stack.admin)
        assert r.status_code == 429


async def test_every_answer_carries_security_headers(stack: Stack):
    for path in ("/health", "/v1/whoami"):
        r = await stack.http.get(path)
        assert r.headers["x-content-type-options"] == "nosniff"
        assert r.headers["x-frame-options"] == "DENY"
        assert "default-src 'none'" in r.headers["content-security-policy"]
        assert r.headers["cache-control"] == "no-store"


async def test_cross_org_attempt_is_audited_in_the_callers_org_only(stack: Stack):
    victim, project, _ = await make_org_and_project(stack.http, stack.admin)
    attacker, _, _ = await make_org_and_project(stack.http, stack.admin)
    intruder = await issue_key(stack.http, stack.admin, attacker, "admin", "auditor")
    r = await stack.http.post(
        f"/v1/projects/{project}/findings", json=finding_body(), headers=intruder
    )
    assert r.status_code == 404

    async def denial_in_attacker_org():
        r = await stack.http.get(
            "/v1/audit", params={"type": "pearl.access_denial.recorded.v1"}, headers=intruder
        )
        return r.json()["items"]

    [entry] = await eventually(denial_in_attacker_org)
    assert entry["data"]["code"] == "cross-org"
    assert entry["data"]["channel"] == "http"
    assert project in entry["data"]["resource"]
    r = await stack.http.get(
        "/v1/audit", params={"org": victim, "limit": 1000}, headers=stack.admin
    )
    assert all(e["aggregate"] != "access_denial" for e in r.json()["items"])


async def test_no_secret_reaches_logs_events_or_errors(stack: Stack):
    captured = io.StringIO()
    handler = logging.StreamHandler(captured)
    handler.setFormatter(JsonFormatter("test"))
    root = logging.getLogger()
    root.addHandler(handler)
    level = root.level
    root.setLevel(logging.DEBUG)
    try:
        org, project, _ = await make_org_and_project(stack.http, stack.admin)
        r = await stack.http.post(
            f"/v1/orgs/{org}/keys", json={"name": "ci", "roles": ["service"]}, headers=stack.admin
        )
        token = r.json()["token"]
        ci = {"Authorization": f"Bearer {token}"}
        r = await stack.http.post(
            f"/v1/projects/{project}/findings", json=finding_body(), headers=ci
        )
        wrong = token[:-4] + "0000"
        bad = await stack.http.get("/v1/whoami", headers={"Authorization": f"Bearer {wrong}"})
        await stack.http.get(
            f"/v1/projects/{project}/findings",
            params={"min_position": r.json()["position"]},
            headers=ci,
        )
    finally:
        root.removeHandler(handler)
        root.setLevel(level)
    logs = captured.getvalue()
    secret_part = token.split("_", 2)[2]
    assert secret_part not in logs and stack.admin_token not in logs
    assert secret_part not in bad.text and wrong not in bad.text
    notes = stack.app.recorder.select_notifications(1, 1_000_000)
    assert all(secret_part.encode() not in n.state for n in notes)
    assert all(stack.admin_token.encode() not in n.state for n in notes)


async def test_keys_are_listed_without_secrets_with_last_use_and_revocation(stack: Stack):
    org, _, _ = await make_org_and_project(stack.http, stack.admin)
    issued = await stack.http.post(
        f"/v1/orgs/{org}/keys", json={"name": "ci", "roles": ["service"]}, headers=stack.admin
    )
    token, key_id = issued.json()["token"], issued.json()["key_id"]
    ci = {"Authorization": f"Bearer {token}"}
    assert (await stack.http.get("/v1/whoami", headers=ci)).status_code == 200

    async def used():
        r = await stack.http.get(f"/v1/orgs/{org}/keys", headers=stack.admin)
        rows = [k for k in r.json()["items"] if k["key_id"] == key_id]
        return rows if rows and rows[0]["last_used_at"] else None

    [row] = await eventually(used)
    assert row["roles"] == ["service"] and row["revoked"] is False
    assert token not in json.dumps(row) and "digest" not in row and "salt" not in row
    r = await stack.http.delete(f"/v1/orgs/{org}/keys/{key_id}", headers=stack.admin)
    assert r.status_code == 200
    stack.http._transport.app.state.ctx._auth_cache.clear()  # type: ignore[attr-defined]
    assert (await stack.http.get("/v1/whoami", headers=ci)).status_code == 401
