"""Scan jobs end to end: a real scanner (Bandit) on a real directory, through the real ingestion
path, against real PostgreSQL and NATS; retries and final failure; the HTTP API; the scanner
process handling (timeouts, errors, environment).

Until scan targets are wired into PearlApp, the API routes and the projector, these tests use
`TargetsApp`, mount `services.api.targets.ROUTES` on their own API, and apply the scan target
projection themselves (see `project_targets`).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import sys
import textwrap
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any
from uuid import UUID

import httpx
import psycopg
import pytest

from domain.scan_job import ScanJob
from domain.wire import to_envelope
from projections import targets as target_projection
from projections.base import Batch
from projections.runner import POLICY, READER_ROLE
from services.api import targets as targets_api
from services.api.app import create_app
from services.api.context import ApiContext
from services.reports import ReportStore
from services.runtime import read_pool
from services.scan_jobs import ScanJobRunner, ScanSettings, TargetsApp
from services.scanners_local import (
    Invocation,
    ScannerError,
    installed,
    run_process,
    run_scanner,
)
from tests.support.helpers import eventually, issue_key, make_org_and_project
from tests.support.stack import Stack

pytestmark = pytest.mark.integration

VULNERABLE = textwrap.dedent(
    """\
    import pickle


    def load(blob):
        assert blob, "empty"
        return pickle.loads(blob)
    """
)
FAST = ScanSettings(backoff_base_seconds=0.05, grace_seconds=1.0, ack_wait_seconds=5.0)


@dataclass_free := None  # noqa: B018 (placeholder removed below)
