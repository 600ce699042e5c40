"""Run PeaRL processes as real subprocesses, so tests can SIGKILL and restart them."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

from services.settings import Settings


def process_env(settings: Settings) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PEARL_")}
    env.update(
        {
            "NATS_URL": settings.nats_url or "",
            "DATABASE_URL": settings.database_url or "",
            "PEARL_SUBJECT_ROOT": settings.subject_root,
            "PEARL_LOG_LEVEL": "WARNING",
        }
    )
    return env


class PearlProcess:
    """One `pearl run <name>` child; `kill()` is SIGKILL, as a crash would be."""

    def __init__(
        self, name: str, settings: Settings, log_dir: Path, env: dict[str, str] | None = None
    ) -> None:
        self.name = name
        self.settings = settings
        self.log_path = log_dir / f"{name}.log"
        self.proc: subprocess.Popen[bytes] | None = None
        self.env = env or {}

    def start(self) -> PearlProcess:
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "services.cli.main", "run", self.name],
                env={**process_env(self.settings), **self.env},
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        return self

    def kill(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.kill()
