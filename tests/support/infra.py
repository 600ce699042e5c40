"""Where tests find PostgreSQL and NATS: the machine's, containers when Docker runs, or embedded.

Each test session gets its own database and its own subject root / stream names, removed after.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlparse

import psycopg
from psycopg import sql

DEFAULT_PG = "postgresql://postgres@127.0.0.1:5432/postgres"
DEFAULT_NATS = "nats://127.0.0.1:4222"


def reachable(url: str, default_port: int) -> bool:
    parsed = urlparse(url)
    try:
        with socket.create_connection(
            (parsed.hostname or "127.0.0.1", parsed.port or default_port), timeout=1.0
        ):
            return True
    except OSError:
        return False


def docker_available() -> bool:
    if not shutil.which("docker"):
        return False
    try:
        return subprocess.run(["docker", "info"], capture_output=True, timeout=5).returncode == 0
    except (OSError, subprocess.SubprocessError):
        return False


@dataclass
class Servers:
    """Admin URLs of the PostgreSQL and NATS servers the test session uses."""

    postgres: str
    nats: str


@contextlib.contextmanager
def servers() -> Iterator[Servers]:
    """Local services if reachable, else testcontainers (Docker), else embedded servers."""
    pg_url = os.environ.get("PEARL_TEST_DATABASE_URL", DEFAULT_PG)
    nats_url = os.environ.get("PEARL_TEST_NATS_URL", DEFAULT_NATS)
    with contextlib.ExitStack() as stack:
        if not reachable(pg_url, 5432):
            pg_url = stack.enter_context(_fallback_postgres())
        if not reachable(nats_url, 4222):
            nats_url = stack.enter_context(_fallback_nats())
        yield Servers(pg_url, nats_url)


@contextlib.contextmanager
def _fallback_postgres() -> Iterator[str]:
    if docker_available():
        with contextlib.suppress(ImportError):
            from testcontainers.postgres import PostgresContainer

            with PostgresContainer("postgres:16-alpine", driver=None) as pg:
                yield pg.get_connection_url()
                return
    from services.embedded import EmbeddedPostgres

    with tempfile.TemporaryDirectory(prefix="pearl-test-pg-") as home:
        server = EmbeddedPostgres(Path(home))
        try:
            yield server.start()
        finally:
            server.stop()


@contextlib.contextmanager
def _fallback_nats() -> Iterator[str]:
    if docker_available():
        with contextlib.suppress(ImportError):
            from testcontainers.nats import NatsContainer

            with NatsContainer("nats:2.10-alpine").with_command("-js") as nc:
                yield nc.nats_uri()
                return
    from services.embedded import EmbeddedNats

    with tempfile.TemporaryDirectory(prefix="pearl-test-nats-") as home:
        server = EmbeddedNats(Path(home))
        try:
            yield server.start()
        finally:
            server.stop()


def unique_name(prefix: str) -> str:
    return f"{prefix}{uuid.uuid4().hex[:10]}"


def with_database(admin_url: str, dbname: str) -> str:
    return urlparse(admin_url)._replace(path=f"/{dbname}").geturl()


def create_database(admin_url: str, dbname: str) -> str:
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(dbname)))
    return with_database(admin_url, dbname)


def drop_database(admin_url: str, dbname: str) -> None:
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(
            sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(dbname))
        )
