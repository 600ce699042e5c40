"""Configuration of every PeaRL process, from the environment (pydantic-settings)."""

from __future__ import annotations

from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlparse

from pydantic import AliasChoices, Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from services.store import RECORDER_TOPIC


class Settings(BaseSettings):
    """All knobs; `NATS_URL` and `DATABASE_URL` unset means `pearl up` embeds its own servers."""

    model_config = SettingsConfigDict(env_prefix="PEARL_", extra="ignore")

    nats_url: str | None = Field(
        default=None, validation_alias=AliasChoices("NATS_URL", "PEARL_NATS_URL")
    )
    database_url: str | None = Field(
        default=None, validation_alias=AliasChoices("DATABASE_URL", "PEARL_DATABASE_URL")
    )
    subject_root: str = Field(default="pearl", pattern=r"^[a-z][a-z0-9_]{0,30}$")
    home: Path = Path(".pearl")
    host: str = "127.0.0.1"
    port: int = 8000
    db_pool_size: int = 8
    log_level: str = "INFO"
    log_json: bool = True
    max_body_bytes: int = 1024 * 1024
    max_report_bytes: int = 100 * 1024 * 1024
    read_wait_max_seconds: float = 10.0
    #: `/ready`: the longest any one check (PostgreSQL, NATS, the stream) may take
    ready_check_timeout_seconds: float = Field(default=1.0, gt=0)
    #: `/ready` is 503 when the relay is more than this many events behind the store (high
    #: enough that one large scan does not take every API replica out of rotation at once;
    #: a relay or projector that stops is caught by `ready_stuck_seconds`)
    ready_max_relay_lag: int = Field(default=100_000, ge=0)
    #: `/ready` is 503 when a projection is more than this many events behind the store
    ready_max_projection_lag: int = Field(default=100_000, ge=0)
    #: `/ready` is 503 when the relay or a projection is behind and has not moved for this long
    ready_stuck_seconds: float = Field(default=30.0, gt=0)
    #: the read pool gives up a reconnection attempt after this long and starts afresh on the
    #: next request, so reads (and `/ready`) recover within seconds of PostgreSQL returning
    db_reconnect_seconds: float = Field(default=2.0, gt=0)
    relay_batch_size: int = 500
    projector_batch_size: int = 256
    worker_batch_size: int = 64
    cors_origins: list[str] = []
    jwt_secret: str | None = None
    jwt_jwks_url: str | None = None
    jwt_issuer: str | None = None
    jwt_audience: str = "pearl"
    jwt_leeway_seconds: int = 30
    #: an unknown `kid` refetches the JWKS at most this often (a key rotation waits this long)
    jwt_jwks_refresh_cooldown_seconds: float = 30.0
    jwt_org_claim: str = "org"
    jwt_roles_claim: str = "roles"
    rate_limit_per_minute: int = 600
    auth_failures_per_minute: int = 30
    request_timeout_seconds: float = 30.0
    upload_timeout_seconds: float = 600.0
    otel_console: bool = False
    #: copies of each JetStream stream (3 on a 3-node cluster; 1 on a single server)
    stream_replicas: int = Field(default=1, ge=1, le=5)
    #: how often the scheduler looks for due jobs
    scheduler_tick_seconds: float = 5.0
    #: the scheduler lease's TTL: a dead leader is replaced this long after its last renewal
    scheduler_lease_seconds: float = 15.0
    #: how often the scheduler signs audit checkpoints (with a signing key configured)
    checkpoint_every_seconds: float = 3600.0
    #: `pearl up`: first restart delay of a process that exited, doubled on each further exit
    restart_backoff_seconds: float = 0.5
    #: `pearl up`: the restart delay never exceeds this
    restart_backoff_max_seconds: float = 5.0
    #: `pearl up`: a process up this long counts as healthy again (its delay starts over)
    restart_stable_seconds: float = 30.0

    def require_urls(self) -> tuple[str, str]:
        if not self.nats_url or not self.database_url:
            raise RuntimeError("NATS_URL and DATABASE_URL must be set (or run `pearl up`)")
        return self.nats_url, self.database_url

    def event_store_env(self, *, create_tables: bool = False) -> dict[str, str]:
        """The `eventsourcing` environment for the PostgreSQL event store at DATABASE_URL."""
        _, database_url = self.require_urls()
        return event_store_env(database_url, self.db_pool_size, create_tables=create_tables)


def event_store_env(
    database_url: str, pool_size: int = 4, *, create_tables: bool
) -> dict[str, str]:
    url = urlparse(database_url)
    return {
        "PERSISTENCE_MODULE": "eventsourcing.postgres",
        "APPLICATION_RECORDER_TOPIC": RECORDER_TOPIC,
        "POSTGRES_DBNAME": (url.path or "/postgres").lstrip("/") or "postgres",
        "POSTGRES_HOST": url.hostname or "127.0.0.1",
        "POSTGRES_PORT": str(url.port or 5432),
        "POSTGRES_USER": unquote(url.username or "postgres"),
        "POSTGRES_PASSWORD": unquote(url.password or ""),
        "POSTGRES_POOL_SIZE": str(pool_size),
        "POSTGRES_MAX_OVERFLOW": str(pool_size),
        "POSTGRES_CONN_MAX_AGE": "600",
        "POSTGRES_PRE_PING": "y",
        "POSTGRES_LOCK_TIMEOUT": "10",
        "CREATE_TABLE": "y" if create_tables else "n",
    }


def redact(url: str | None) -> str:
    """A URL with its password removed, safe to log."""
    if not url:
        return ""
    parsed = urlparse(url)
    if parsed.password is None:
        return url
    userinfo, _, host = parsed.netloc.rpartition("@")
    user = userinfo.partition(":")[0]
    return parsed._replace(netloc=f"{user}:***@{host}").geturl()


def load_settings(**overrides: Any) -> Settings:
    return Settings(**overrides)
