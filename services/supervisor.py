"""`pearl up`: embedded servers when needed, schema, admin key, then every process, supervised."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from domain.errors import PearlError
from services.runtime import build_app, migrate
from services.settings import Settings

log = logging.getLogger(__name__)
PROCESSES = ("api", "relay", "projector", "worker", "scan-jobs", "scheduler", "gatekeeper")


@dataclass
class Child:
    name: str
    argv: list[str]
    env: dict[str, str]
    log_path: Path
    proc: subprocess.Popen[bytes] | None = None
    restarts: int = 0
    started_at: float = field(default=0.0)

    def start(self) -> None:
        log_file = self.log_path.open("ab")
        self.proc = subprocess.Popen(  # noqa: S603 - our own interpreter and module
            self.argv,
            env=self.env,
            stdout=log_file,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        log_file.close()
        self.started_at = time.monotonic()

    def stop(self, timeout: float = 10.0) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(5)


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


def wait_ready(url: str, timeout: float = 60.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(f"{url}/ready", timeout=2.0).status_code == 200:
                return True
        time.sleep(0.2)
    return False


def up(settings: Settings) -> int:
    """Run everything in the foreground until Ctrl-C / SIGTERM; returns the exit code."""
    from services.embedded import EmbeddedNats, EmbeddedPostgres

    home = settings.home.resolve()
    (home / "logs").mkdir(parents=True, exist_ok=True)
    embedded: list[EmbeddedNats | EmbeddedPostgres] = []
    stopping = False

    def on_signal(signum: int, _frame: object) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    children: list[Child] = []
    try:
        updates: dict[str, str] = {}
        if not settings.nats_url:
            nats = EmbeddedNats(home)
            embedded.append(nats)
            updates["nats_url"] = nats.start()
            log.info("embedded NATS started", extra={"url": updates["nats_url"]})
        if not settings.database_url:
            pg = EmbeddedPostgres(home)
            embedded.append(pg)
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
        url = f"http://{settings.host}:{settings.port}"
        (home / "api.url").write_text(url + "\n")
        if not wait_ready(url):
            log.error("the API did not become ready; see logs", extra={"logs": str(home / "logs")})
            return 1
        print(f"PeaRL NATS: {settings.nats_url}", flush=True)
        print(f"PeaRL API: {url}", flush=True)
        while not stopping:
            time.sleep(0.2)
            for child in children:
                if child.proc is not None and child.proc.poll() is not None and not stopping:
                    log.warning(
                        "process exited; restarting",
                        extra={"process": child.name, "code": child.proc.returncode},
                    )
                    child.restarts += 1
                    time.sleep(min(0.5 * child.restarts, 5.0))
                    child.start()
        return 0
    finally:
        for child in reversed(children):
            child.stop()
        for server in reversed(embedded):
            server.stop()
        with contextlib.suppress(FileNotFoundError):
            (home / ENV_FILE).unlink()
        print("PeaRL stopped", flush=True)
