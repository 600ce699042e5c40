"""The atheris harness runs every parser for a bounded time and finds no crash."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pytest

HARNESS = Path(__file__).resolve().parents[2] / "fuzz" / "fuzz_parsers.py"
SECONDS = int(os.environ.get("PEARL_FUZZ_SECONDS", "60"))


@pytest.mark.skipif(importlib.util.find_spec("atheris") is None, reason="atheris not installed")
def test_no_parser_crashes_when_fuzzed_for_a_bounded_time(tmp_path: Path) -> None:
    artifacts = tmp_path / "artifacts"
    corpus = tmp_path / "corpus"
    artifacts.mkdir()
    corpus.mkdir()
    run = subprocess.run(
        [
            sys.executable,
            str(HARNESS),
            f"-max_total_time={SECONDS}",
            "-timeout=20",
            "-rss_limit_mb=2048",
            f"-artifact_prefix={artifacts}/",
            str(corpus),
        ],
        capture_output=True,
        text=True,
        timeout=SECONDS + 120,
        check=False,
    )
    crashes = {path.name: path.read_bytes()[:2000] for path in artifacts.iterdir()}
    assert run.returncode == 0 and not crashes, (crashes, run.stderr[-5000:])
    assert "Done" in run.stderr and any(corpus.iterdir())
