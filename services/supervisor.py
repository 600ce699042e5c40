"""`pearl up`: embedded servers when needed, schema, admin key, then every process, supervised."""

from __future__ import annotations

import asyncio
import contextlib
import enum
import logging
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import httpx

from domain.errors import PearlError
from services.embedded import EmbeddedNats, EmbeddedPostgres, EmbeddedServerError
from services.runtime import build_app, migrate
from services.settings import Settings

log = logging.getLogger(__name__)
PROCESSES = ("api", "relay", "projector", "worker", "scan-jobs", "scheduler", "gatekeeper")
TICK_SECONDS = 0.1
READY_TIMEOUT_S = 60.0


@dataclass
class Child:
    name: str
    argv: list[str]
    env: dict[str, str]
    log_path: Path
    proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        log_file = self.log_path.open("ab")
        try:
            self.proc = subprocess.Popen(  # noqa: S603 - our own interpreter and module
                self.argv,
                env=self.env,
                stdout=log_file,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        finally:
            log_file.close()

    def exit_code(self) -> int | None:
        return self.proc.poll() if self.proc is not None else None

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc is not None else None

    def stop(self, timeout: float = 10.0) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(5)


@dataclass(frozen=True)
class Backoff:
    """Restart delays: `base` after the first exit, doubled on each further one up to `cap`;
    a process that stayed up `stable_after` seconds starts over at `base`."""

    base: float = 0.5
    cap: float = 5.0
    stable_after: float = 30.0

    def delay(self, failures: int) -> float:
        return float(min(self.base * 2 ** max(failures - 1, 0), self.cap))


class State(enum.Enum):
    RUNNING = "running"
    WAITING = "waiting"  # exited; restarts at `next_start`
    STARTING = "starting"  # a blocking start (an embedded server) runs in a thread


@dataclass
class Unit:
    """One supervised process: how to start it (again) and whether it still runs."""

    name: str
    start: Callable[[], object]
    exit_code: Callable[[], int | None]
    pid: Callable[[], int | None]
    blocking: bool = False  # start() waits until the server is ready: run it in a thread
    state: State = State.RUNNING
    failures: int = 0
    restarts: int = 0
    started_at: float = 0.0
    exited_at: float = 0.0
    next_start: float = 0.0
    pending: Future[object] | None = None


class Supervisor:
    """Restarts every unit that exits, each on its own schedule (no unit waits for another).

    `tick()` looks at each unit once: a running one that exited is given its next start time
    (exponential back-off from `Backoff`, monotonic clock); a waiting one whose time has come
    is started — in a thread when its start blocks until ready, so one slow server never holds
    the others back. Every exit and restart is logged with the process name, exit code,
    restart count and delay."""

    def __init__(
        self,
        units: list[Unit],
        backoff: Backoff,
        *,
        clock: Callable[[], float] = time.monotonic,
        pid_dir: Path | None = None,
    ) -> None:
        self.units = units
        self.backoff = backoff
        self.clock = clock
        self.pid_dir = pid_dir
        self.executor = ThreadPoolExecutor(max(len(units), 1), thread_name_prefix="pearl-start")
        now = clock()
        for unit in units:
            unit.started_at = now
            self._write_pid(unit)

    def tick(self) -> None:
        now = self.clock()
        for unit in self.units:
            if unit.state is State.RUNNING:
                self._check(unit, now)
            elif unit.state is State.WAITING and now >= unit.next_start:
                self._start(unit, now)
            elif unit.state is State.STARTING and unit.pending is not None and unit.pending.done():
                error = unit.pending.exception()
                unit.pending = None
                if error is None:
                    self._started(unit, now)
                else:
                    self._failed(unit, now, f"start failed: {error}")

    def _check(self, unit: Unit, now: float) -> None:
        code = unit.exit_code()
        if code is None:
            return
        if now - unit.started_at >= self.backoff.stable_after:
            unit.failures = 0
        unit.exited_at = now
        self._failed(unit, now, "exited", code)

    def _failed(self, unit: Unit, now: float, what: str, code: int | None = None) -> None:
        unit.failures += 1
        delay = self.backoff.delay(unit.failures)
        unit.state, unit.next_start = State.WAITING, now + delay
        log.warning(
            "%s %s (code %s); restarting in %.1fs",
            unit.name,
            what,
            code,
            delay,
            extra={
                "process_name": unit.name,
                "exit_code": code,
                "restarts": unit.restarts,
                "failures": unit.failures,
                "backoff_s": delay,
            },
        )

    def _start(self, unit: Unit, now: float) -> None:
        if unit.blocking:
            unit.state, unit.pending = State.STARTING, self.executor.submit(unit.start)
            return
        try:
            unit.start()
        except (OSError, EmbeddedServerError) as exc:
            self._failed(unit, now, f"start failed: {exc}")
            return
        self._started(unit, now)

    def _started(self, unit: Unit, now: float) -> None:
        unit.state, unit.started_at = State.RUNNING, now
        unit.restarts += 1
        self._write_pid(unit)
        log.warning(
            "%s restarted (restart %d, pid %s)",
            unit.name,
            unit.restarts,
            unit.pid(),
            extra={
                "process_name": unit.name,
                "restarts": unit.restarts,
                "pid": unit.pid(),
                "down_s": round(now - unit.exited_at, 3),
            },
        )

    def _write_pid(self, unit: Unit) -> None:
        """`<pid_dir>/<name>.pid`: where operators (and fault tests) find each process."""
        pid = unit.pid()
        if self.pid_dir is None or pid is None:
            return
        self.pid_dir.mkdir(parents=True, exist_ok=True)
        tmp = self.pid_dir / f".{unit.name}.pid.tmp"
        tmp.write_text(f"{pid}\n")
        tmp.replace(self.pid_dir / f"{unit.name}.pid")

    def close(self) -> None:
        """Wait for starts in progress (so what they started can be stopped); no pid files."""
        self.executor.shutdown(wait=True, cancel_futures=True)
        if self.pid_dir is not None:
            for unit in self.units:
                (self.pid_dir / f"{unit.name}.pid").unlink(missing_ok=True)


def child_unit(child: Child) -> Unit:
    return Unit(child.name, child.start, child.exit_code, lambda: child.pid)


def server_unit(name: str, server: EmbeddedNats | EmbeddedPostgres) -> Unit:
    return Unit(name, server.restart, lambda: server.exit_code, lambda: server.pid, blocking=True)


def ensure_admin_key(settings: Settings) -> Path:
    """Create the bootstrap admin key once; keep a key file that still authenticates."""
    path = settings.home / "admin.key"
    app = build_app(settings)
    try:
        if path.exists():
            with contextlib.suppress(PearlError):
                app.authenticate(path.read_text().strip())
                return path
        token = app.bootstrap_admin_key()
    finally:
        app.close()
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(token + "\n")
    os.chmod(path, 0o600)
    return path


ENV_FILE = "pearl.env"


def write_env_file(home: Path, settings: Settings) -> None:
    """Where the running servers are, for CLI commands run while `pearl up` is up."""
    lines = [
        f"NATS_URL={settings.nats_url}",
        f"DATABASE_URL={settings.database_url}",
        f"PEARL_SUBJECT_ROOT={settings.subject_root}",
    ]
    path = home / ENV_FILE
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write("\n".join(lines) + "\n")


def read_env_file(home: Path) -> dict[str, str]:
    path = home / ENV_FILE
    if not path.exists():
        return {}
    pairs = (line.split("=", 1) for line in path.read_text().splitlines() if "=" in line)
    return {k.strip(): v.strip() for k, v in pairs}


def ensure_jwt_secret(home: Path) -> str:
    """The HS256 secret of the embedded default, created once under the home (mode 0600)."""
    path = home / "jwt.secret"
    if not path.exists():
        import secrets

        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as fh:
            fh.write(secrets.token_urlsafe(48) + "\n")
    return path.read_text().strip()


def is_ready(url: str) -> bool:
    with contextlib.suppress(httpx.HTTPError):
        return httpx.get(f"{url}/ready", timeout=1.0).status_code == 200
    return False


def up(settings: Settings) -> int:
    """Run everything in the foreground until Ctrl-C / SIGTERM; returns the exit code."""
    home = settings.home.resolve()
    (home / "logs").mkdir(parents=True, exist_ok=True)
    embedded: list[tuple[str, EmbeddedNats | EmbeddedPostgres]] = []
    stopping = False

    def on_signal(signum: int, _frame: object) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    children: list[Child] = []
    supervisor: Supervisor | None = None
    try:
        updates: dict[str, str] = {}
        if not settings.nats_url:
            nats = EmbeddedNats(home)
            embedded.append(("nats", nats))
            updates["nats_url"] = nats.start()
            log.info("embedded NATS started", extra={"url": updates["nats_url"]})
        if not settings.database_url:
            pg = EmbeddedPostgres(home)
            embedded.append(("postgres", pg))
            updates["database_url"] = pg.start()
            log.info("embedded PostgreSQL started", extra={"url": updates["database_url"]})
        settings = settings.model_copy(update={**updates, "home": home})
        write_env_file(home, settings)
        asyncio.run(migrate(settings))
        key_path = ensure_admin_key(settings)
        if not settings.jwt_secret and not settings.jwt_jwks_url:
            settings = settings.model_copy(update={"jwt_secret": ensure_jwt_secret(home)})
        print(f"Admin API key: {key_path}", flush=True)
        env = {
            **os.environ,
            "NATS_URL": settings.nats_url or "",
            "DATABASE_URL": settings.database_url or "",
            "PEARL_HOME": str(home),
            "PEARL_HOST": settings.host,
            "PEARL_PORT": str(settings.port),
            "PEARL_SUBJECT_ROOT": settings.subject_root,
            "PEARL_JWT_SECRET": settings.jwt_secret or "",
        }
        for name in PROCESSES:
            argv = [sys.executable, "-m", "services.cli.main", "run", name]
            children.append(Child(name, argv, env, home / "logs" / f"{name}.log"))
        for child in children:
            child.start()
        backoff = Backoff(
            settings.restart_backoff_seconds,
            settings.restart_backoff_max_seconds,
            settings.restart_stable_seconds,
        )
        units = [server_unit(name, server) for name, server in embedded]
        units += [child_unit(child) for child in children]
        supervisor = Supervisor(units, backoff, pid_dir=home / "pids")
        url = f"http://{settings.host}:{settings.port}"
        (home / "api.url").write_text(url + "\n")
        ready_by = time.monotonic() + READY_TIMEOUT_S
        announced = False
        while not stopping:
            supervisor.tick()
            if not announced:
                if is_ready(url):
                    print(f"PeaRL NATS: {settings.nats_url}", flush=True)
                    print(f"PeaRL API: {url}", flush=True)
                    announced = True
                elif time.monotonic() > ready_by:
                    log.error(
                        "the API did not become ready; see logs", extra={"logs": str(home / "logs")}
                    )
                    return 1
            time.sleep(TICK_SECONDS)
        return 0
    finally:
        if supervisor is not None:
            supervisor.close()
        for child in reversed(children):
            child.stop()
        for _, server in reversed(embedded):
            server.stop()
        with contextlib.suppress(FileNotFoundError):
            (home / ENV_FILE).unlink()
        print("PeaRL stopped", flush=True)
