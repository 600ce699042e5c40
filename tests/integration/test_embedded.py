"""Embedded NATS / PostgreSQL for `pearl up`: real processes, no mocks."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

import nats
import psycopg
import pytest

from services.embedded import (
    EmbeddedNats,
    EmbeddedPostgres,
    EmbeddedServerError,
    find_free_port,
    nats_server_binary,
    postgres_bin_dir,
)

pytestmark = pytest.mark.integration


def _wait_gone(pid: int, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.05)
    raise AssertionError(f"pid {pid} still alive")


def test_binaries_and_ports_are_found() -> None:
    assert Path(nats_server_binary()).is_file()
    assert (postgres_bin_dir() / "postgres").is_file()
    port = find_free_port()
    assert 0 < port < 65536


def test_postgres_data_survives_restart(tmp_path: Path) -> None:
    home = tmp_path / ".pearl"
    pg = EmbeddedPostgres(home)
    url = pg.start()
    try:
        assert url.startswith("postgresql://postgres@127.0.0.1:")
        assert url == pg.url
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute("CREATE TABLE t (id int PRIMARY KEY, note text)")
            conn.execute("INSERT INTO t VALUES (1, 'kept')")
    finally:
        pg.stop()
    pg.stop()  # idempotent
    assert not pg.running
    data_dir = home / "pg" / "data"
    assert (data_dir / "PG_VERSION").is_file()
    assert (data_dir.stat().st_mode & 0o777) == 0o700
    assert not (data_dir / "postmaster.pid").exists()
    assert (home / "logs" / "postgres.log").stat().st_size > 0

    with EmbeddedPostgres(home) as pg2, psycopg.connect(pg2.url) as conn:
        row = conn.execute("SELECT note FROM t WHERE id = 1").fetchone()
        assert row == ("kept",)
        (user,) = conn.execute("SELECT current_user").fetchone() or ("",)
        assert user == "postgres"
    assert not pg2.running


def test_postgres_refuses_second_server_on_running_data_dir(tmp_path: Path) -> None:
    with EmbeddedPostgres(tmp_path) as first:
        assert first.pid is not None
        second = EmbeddedPostgres(tmp_path)
        with pytest.raises(EmbeddedServerError, match=rf"\(pid {first.pid}\) is already running"):
            second.start()
        second.stop()  # never started: harmless
        with psycopg.connect(first.url) as conn:  # first one unaffected
            assert conn.execute("SELECT 1").fetchone() == (1,)


def test_postgres_starts_after_crash_with_stale_pid_file(tmp_path: Path) -> None:
    pg = EmbeddedPostgres(tmp_path)
    pg.start()
    with psycopg.connect(pg.url, autocommit=True) as conn:
        conn.execute("CREATE TABLE t (v text)")
        conn.execute("INSERT INTO t VALUES ('before crash')")
    pid = pg.pid
    assert pid is not None
    os.kill(pid, signal.SIGKILL)  # as if the machine / `pearl up` died hard
    pg.stop()  # only reaps the dead child
    _wait_gone(pid)
    pid_file = tmp_path / "pg" / "data" / "postmaster.pid"
    assert pid_file.exists()  # stale lock left behind

    # The stale pid may even belong to some other live process by now.
    other = subprocess.Popen(["sleep", "60"])
    try:
        lines = pid_file.read_text().splitlines()
        lines[0] = str(other.pid)
        pid_file.write_text("\n".join(lines) + "\n")
        time.sleep(0.5)  # let the orphaned backends notice their postmaster died
        with EmbeddedPostgres(tmp_path) as again, psycopg.connect(again.url) as conn:
            assert conn.execute("SELECT v FROM t").fetchall() == [("before crash",)]
    finally:
        other.kill()
        other.wait()


async def test_nats_jetstream_survives_restart(tmp_path: Path) -> None:
    home = tmp_path / ".pearl"
    server = EmbeddedNats(home)
    url = server.start()
    try:
        assert url.startswith("nats://127.0.0.1:")
        nc = await nats.connect(url)
        try:
            js = nc.jetstream()
            await js.add_stream(name="EVENTS", subjects=["events.>"])
            ack = await js.publish("events.one", b"hello")
            assert ack.stream == "EVENTS"
            assert ack.seq == 1
            assert nc.max_payload == 8 * 1024 * 1024
        finally:
            await nc.close()
    finally:
        server.stop()
    server.stop()  # idempotent
    assert not server.running
    assert (home / "nats" / "jetstream").is_dir()
    assert (home / "logs" / "nats.log").stat().st_size > 0

    with EmbeddedNats(home) as again:
        nc = await nats.connect(again.url)
        try:
            js = nc.jetstream()
            info = await js.stream_info("EVENTS")
            assert info.state.messages == 1
            msg = await js.get_msg("EVENTS", 1)
            assert msg.data == b"hello"
            assert msg.subject == "events.one"
        finally:
            await nc.close()


def test_nats_refuses_second_server_on_same_store(tmp_path: Path) -> None:
    with EmbeddedNats(tmp_path) as first:
        second = EmbeddedNats(tmp_path)
        with pytest.raises(EmbeddedServerError, match=rf"\(pid {first.pid}\) is already running"):
            second.start()
        assert first.running
    # Once the first one is gone the store is free again.
    with EmbeddedNats(tmp_path) as third:
        assert third.running


def test_explicit_ports_are_used(tmp_path: Path) -> None:
    nats_port, pg_port = find_free_port(), find_free_port()
    with EmbeddedNats(tmp_path, port=nats_port) as n, EmbeddedPostgres(tmp_path, port=pg_port) as p:
        assert n.url == f"nats://127.0.0.1:{nats_port}"
        assert p.url == f"postgresql://postgres@127.0.0.1:{pg_port}/postgres"


def test_url_before_start_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(EmbeddedServerError, match="not been started"):
        _ = EmbeddedNats(tmp_path).url


def test_killed_servers_restart_on_the_same_port_with_their_data() -> None:
    """What `pearl up` does when an embedded server dies: `restart()` on the same URL."""
    import shutil
    import tempfile

    home = Path(tempfile.mkdtemp(prefix="pearl-embedded-restart-"))  # not pytest's basetemp
    home.chmod(0o755)
    nats_server, pg = EmbeddedNats(home), EmbeddedPostgres(home)
    try:
        nats_url, pg_url = nats_server.start(), pg.start()
        with psycopg.connect(pg_url, autocommit=True) as conn:
            conn.execute("CREATE TABLE kept (v text)")
            conn.execute("INSERT INTO kept VALUES ('before the kill')")
        for server in (nats_server, pg):
            pid = server.pid
            assert pid is not None
            os.kill(pid, signal.SIGKILL)
            deadline = time.monotonic() + 10
            while server.exit_code is None and time.monotonic() < deadline:
                time.sleep(0.05)
            assert server.exit_code == -signal.SIGKILL
        assert nats_server.restart() == nats_url
        deadline = time.monotonic() + 30
        while True:  # orphaned backends may hold the old shared memory for a moment
            try:
                assert pg.restart() == pg_url
                break
            except EmbeddedServerError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.5)
        assert nats_server.running and pg.running
        with psycopg.connect(pg_url) as conn:
            assert conn.execute("SELECT v FROM kept").fetchall() == [("before the kill",)]
    finally:
        pg.stop()
        nats_server.stop()
        shutil.rmtree(home, ignore_errors=True)
