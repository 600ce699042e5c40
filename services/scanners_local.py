"""Locally installed scanners: which are there (and their versions), and running one safely.

A scanner runs as a child process in its own process group, with a scrubbed environment (no
PeaRL credentials), its report on stdout spooled to a temporary file, and a hard timeout that
kills the whole group. Nothing here talks to the network; a scanner that tries to (to fetch
rules or a vulnerability database) fails, and that failure is reported like any other.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from domain.scan_target import SCANNER_KINDS

VERSION_TIMEOUT = 15.0
STDERR_TAIL = 1500
DEFAULT_MAX_BYTES = 100 * 1024 * 1024
_VERSION = re.compile(r"\d+\.\d+(?:\.\d+)?[\w.+-]*")
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")
#: Environment variables a scanner may see; everything else (DATABASE_URL, keys) is dropped.
_PASSTHROUGH = (
    "PATH",
    "HOME",
    "LANG",
    "LC_ALL",
    "TMPDIR",
    "XDG_CACHE_HOME",
    "SSL_CERT_FILE",
    "REQUESTS_CA_BUNDLE",
    "HTTP_PROXY",
    "HTTPS_PROXY",
    "NO_PROXY",
    "http_proxy",
    "https_proxy",
    "no_proxy",
)
_QUIET_ENV = {
    "NO_COLOR": "1",
    "SEMGREP_SEND_METRICS": "off",
    "SEMGREP_ENABLE_VERSION_CHECK": "0",
    "TRIVY_NO_PROGRESS": "true",
    "GRYPE_CHECK_FOR_APP_UPDATE": "false",
    "PIP_DISABLE_PIP_VERSION_CHECK": "1",
}
#: Report parser of each scanner's output (see domain.scanners.FORMATS).
PARSERS = {
    "semgrep": "semgrep",
    "bandit": "bandit",
    "checkov": "checkov",
    "pip-audit": "pip_audit",
    "trivy": "trivy",
    "grype": "grype",
}


class ScannerError(Exception):
    """A scanner could not produce a report; `permanent` failures are not worth retrying."""

    def __init__(self, detail: str, *, permanent: bool = False) -> None:
        super().__init__(detail)
        self.detail = detail
        self.permanent = permanent


@dataclass(frozen=True, slots=True)
class ScannerInfo:
    """An installed scanner: where it is, its version, and the target kinds it can scan."""

    name: str
    executable: str
    version: str | None
    kinds: tuple[str, ...]

    def public(self) -> dict[str, Any]:
        """What the API shows (never the executable's path on the host)."""
        return {"name": self.name, "version": self.version, "kinds": list(self.kinds)}


@dataclass(frozen=True, slots=True)
class Invocation:
    """How to run one scanner on one target: argv, working directory, exit codes that mean ok."""

    argv: list[str]
    cwd: str | None
    ok_codes: frozenset[int] = field(default_factory=lambda: frozenset({0}))


def scanner_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k in _PASSTHROUGH}
    env.setdefault("PATH", os.defpath)
    env.update(_QUIET_ENV)
    return env


def find_executable(name: str, search_path: str | None = None) -> str | None:
    """The scanner's executable on PATH (or `search_path`), else beside this Python (a venv)."""
    found = shutil.which(name, path=search_path)
    if found is not None or search_path is not None:
        return found
    beside = Path(sys.executable).parent / name
    return str(beside) if beside.is_file() and os.access(beside, os.X_OK) else None


def scanner_version(executable: str) -> str | None:
    """`<scanner> --version`, reduced to its version number; None if it does not answer."""
    try:
        done = subprocess.run(  # noqa: S603 - a fixed argv, no shell
            [executable, "--version"],
            capture_output=True,
            timeout=VERSION_TIMEOUT,
            env=scanner_env(),
            stdin=subprocess.DEVNULL,
            check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    match = _VERSION.search(done.stdout.decode(errors="replace") or done.stderr.decode("latin-1"))
    return match.group(0) if match else None


_cache: dict[str | None, dict[str, ScannerInfo]] = {}
_cache_lock = threading.Lock()


def installed(*, refresh: bool = False, search_path: str | None = None) -> dict[str, ScannerInfo]:
    """The supported scanners found on this host, by name (versions asked once, then cached)."""
    with _cache_lock:
        if not refresh and search_path in _cache:
            return dict(_cache[search_path])
        found: dict[str, ScannerInfo] = {}
        for name in sorted(SCANNER_KINDS):
            executable = find_executable(name, search_path)
            if executable is None:
                continue
            kinds = tuple(sorted(SCANNER_KINDS[name]))
            found[name] = ScannerInfo(name, executable, scanner_version(executable), kinds)
        _cache[search_path] = found
        return dict(found)


# --- building the command line ------------------------------------------------------------------


def invocation(
    scanner: str, kind: str, location: str, executable: str, rules: str | None = None
) -> Invocation:
    """The argv for `scanner` on a target; paths are scanned from inside, so reports are relative.

    Locations and rules paths are absolute (source, iac) or image references that never start
    with '-' (checked when the target was registered), so they cannot be read as options.
    """
    if kind not in SCANNER_KINDS.get(scanner, frozenset()):
        raise ScannerError(f"scanner {scanner!r} cannot scan a {kind!r} target", permanent=True)
    exe = executable
    match scanner, kind:
        case "bandit", _:
            # Bandit exits 1 when it found issues: that is a successful scan.
            return Invocation([exe, "-r", ".", "-f", "json", "-q"], location, frozenset({0, 1}))
        case "semgrep", _:
            if rules is None:
                raise ScannerError("semgrep needs a local rules file", permanent=True)
            argv = [exe, "scan", "--config", rules, "--json", "--metrics=off"]
            return Invocation([*argv, "--disable-version-check", "--quiet", "."], location)
        case "checkov", _:
            argv = [exe, "-d", ".", "-o", "json", "--quiet", "--compact", "--skip-download"]
            return Invocation(argv, location, frozenset({0, 1}))
        case "pip-audit", _:
            return _pip_audit(exe, location)
        case "trivy", "image":
            return Invocation([exe, "image", "--format", "json", "--quiet", location], None)
        case "trivy", _:
            mode = "config" if kind == "iac" else "fs"
            return Invocation([exe, mode, "--format", "json", "--quiet", "."], location)
        case "grype", "image":
            return Invocation([exe, location, "-o", "json", "-q"], None)
        case "grype", _:
            return Invocation([exe, "dir:.", "-o", "json", "-q"], location)
    raise ScannerError(f"unknown scanner {scanner!r}", permanent=True)


def _pip_audit(exe: str, location: str) -> Invocation:
    """pip-audit audits `requirements.txt` if there is one, else the project in the directory."""
    ok = frozenset({0, 1})  # 1: vulnerabilities found
    base = [exe, "-f", "json", "--progress-spinner", "off"]
    if (Path(location) / "requirements.txt").is_file():
        return Invocation([*base, "-r", "requirements.txt"], location, ok)
    if (Path(location) / "pyproject.toml").is_file():
        return Invocation([*base, "."], location, ok)
    raise ScannerError(
        "pip-audit needs a requirements.txt or pyproject.toml in the target", permanent=True
    )


def check_location(kind: str, location: str, allowed_roots: Sequence[str] = ()) -> None:
    """A source/iac location must be an existing directory, inside an allowed root if any.

    Checked before running: Bandit, for one, reports an empty success for a missing path, and a
    full scan with no findings would mark every finding of its scope fixed.
    """
    if kind == "image":
        return
    path = Path(location)
    try:
        real = path.resolve(strict=True)
    except (OSError, RuntimeError):
        raise ScannerError(f"location {location} does not exist") from None
    if not real.is_dir():
        raise ScannerError(f"location {location} is not a directory")
    if allowed_roots and not any(_inside(real, root) for root in allowed_roots):
        raise ScannerError(f"location {location} is outside the allowed scan roots", permanent=True)


def check_rules(rules: str, allowed_roots: Sequence[str] = ()) -> None:
    """The rules file must exist (and be inside an allowed root, if any are set)."""
    try:
        real = Path(rules).resolve(strict=True)
    except (OSError, RuntimeError):
        raise ScannerError(f"rules file {rules} does not exist") from None
    if not real.is_file():
        raise ScannerError(f"rules file {rules} is not a file")
    if allowed_roots and not any(_inside(real, root) for root in allowed_roots):
        raise ScannerError(f"rules file {rules} is outside the allowed roots", permanent=True)


def _inside(real: Path, root: str) -> bool:
    try:
        return real.is_relative_to(Path(root).resolve())
    except (OSError, RuntimeError):
        return False


# --- running ------------------------------------------------------------------------------------


def run_scanner(
    scanner: str,
    kind: str,
    location: str,
    *,
    timeout: float,
    rules: str | None = None,
    allowed_roots: Sequence[str] = (),
    rules_roots: Sequence[str] = (),
    max_bytes: int = DEFAULT_MAX_BYTES,
    search_path: str | None = None,
    cancel: threading.Event | None = None,
) -> bytes:
    """Run an installed scanner on a target and return its JSON report (blocking).

    ScannerError (with the tail of the scanner's stderr) when it is not installed, times out,
    exits with an error, or writes nothing or too much. With `allowed_roots`, the location must
    be inside one of them and the rules file inside one of them or of `rules_roots` (a scanner's
    error output about a file it was pointed at ends up in the job's failure reason).
    """
    info = installed(search_path=search_path).get(scanner)
    if info is None:
        raise ScannerError(f"scanner {scanner!r} is not installed on this worker", permanent=True)
    check_location(kind, location, allowed_roots)
    if rules is not None:
        check_rules(rules, [*allowed_roots, *rules_roots] if allowed_roots else ())
    how = invocation(scanner, kind, location, info.executable, rules)
    return run_process(how, timeout=timeout, max_bytes=max_bytes, name=scanner, cancel=cancel)


def run_process(
    how: Invocation,
    *,
    timeout: float,
    max_bytes: int = DEFAULT_MAX_BYTES,
    name: str = "scanner",
    cancel: threading.Event | None = None,
) -> bytes:
    """Run `how` in a new process group; its stdout on success, ScannerError otherwise."""
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        try:
            proc = subprocess.Popen(  # noqa: S603 - argv built by `invocation`, no shell
                how.argv,
                cwd=how.cwd,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=err,
                env=scanner_env(),
                start_new_session=True,
            )
        except OSError as exc:
            raise ScannerError(f"{name} could not be started: {exc.strerror or exc}") from None
        try:
            code = _wait(proc, timeout, cancel, name)
        finally:
            _kill_group(proc)
        if code not in how.ok_codes:
            raise ScannerError(f"{name} exited with status {code}: {_tail(err)}")
        size = out.seek(0, os.SEEK_END)
        if size == 0:
            raise ScannerError(f"{name} wrote no report: {_tail(err)}")
        if size > max_bytes:
            raise ScannerError(f"{name} report is larger than {max_bytes} bytes", permanent=True)
        out.seek(0)
        return out.read()


def _wait(
    proc: subprocess.Popen[bytes], timeout: float, cancel: threading.Event | None, name: str
) -> int:
    deadline = time.monotonic() + timeout
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            raise ScannerError(f"{name} timed out after {timeout:g}s")
        if cancel is not None and cancel.is_set():
            raise ScannerError(f"{name} was stopped (the worker is shutting down)")
        try:
            return proc.wait(min(left, 0.25))
        except subprocess.TimeoutExpired:
            continue


def _kill_group(proc: subprocess.Popen[bytes]) -> None:
    """Kill the scanner and anything it started; reap it."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(5)


def _tail(err: IO[bytes]) -> str:
    size = err.seek(0, os.SEEK_END)
    err.seek(max(0, size - STDERR_TAIL))
    text = err.read().decode("utf-8", errors="replace").strip()
    return _CONTROL.sub(" ", text) or "(no error output)"
