"""`pearl up` as a real subprocess on a home and port of its own, for the tests that kill its
children and servers: output to a file (never a full pipe), children found by their pid files."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

from services.embedded import find_free_port


class PearlUp:
    """One `pearl up`; `stop()` is Ctrl-C (SIGINT), as a person stops it."""

    def __init__(self, home: Path, port: int, extra_env: dict[str, str] | None = None) -> None:
        self.home = home
        self.port = port
        self.url = f"http://127.0.0.1:{port}"
        self.out = home.parent / "pearl-up.out"
        env = {
            k: v
            for k, v in os.environ.items()
            if k not in ("NATS_URL", "DATABASE_URL") and not k.startswith("PEARL_")
        }
        env.update(extra_env or {})
        argv = [sys.executable, "-m", "services.cli.main", "up"]
        with self.out.open("wb") as out:
            self.proc = subprocess.Popen(
                [*argv, "--port", str(port), "--home", str(home)],
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
            )

    def output(self) -> str:
        return self.out.read_text(errors="replace")

    def pid(self, name: str) -> int | None:
        """The pid of a live child or embedded server (`<home>/pids/<name>.pid`), else None."""
        try:
            pid = int((self.home / "pids" / f"{name}.pid").read_text())
        except (OSError, ValueError):
            return None
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return None
        return pid

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        return self.proc.returncode


@contextlib.contextmanager
def pearl_up_running(
    prefix: str, extra_env: dict[str, str] | None = None, keep: bool = False
) -> Iterator[PearlUp]:
    """A `pearl up` under a new temporary folder, stopped (exit 0 asserted) and removed after.

    Not under pytest's basetemp: a later pytest session takes the o+x bit off it, and the
    embedded PostgreSQL (another user when we are root) could not reach its data dir again.
    """
    base = Path(tempfile.mkdtemp(prefix=prefix))
    base.chmod(0o755)
    up = PearlUp(base / ".pearl", find_free_port(), extra_env)
    try:
        yield up
    finally:
        code = up.stop()
        if code != 0:
            print(up.output()[-4000:])
        if keep:
            print(f"logs kept in {base}")
        else:
            shutil.rmtree(base, ignore_errors=True)
    assert code == 0, f"pearl up exited {code}"
