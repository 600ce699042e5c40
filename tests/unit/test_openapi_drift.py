"""The committed OpenAPI document matches the code (regenerate with `pearl openapi`)."""

from __future__ import annotations

import subprocess
import sys
import warnings
from pathlib import Path

from contracts.docs_text import render
from services.api.app import create_app
from services.api.openapi import offline_context, openapi_document

ROOT = Path(__file__).resolve().parents[2]
COMMITTED = ROOT / "docs" / "openapi.json"


def test_committed_openapi_matches_code_when_routes_change():
    assert render(openapi_document()) == COMMITTED.read_text(), (
        "docs/openapi.json is stale: run `pearl openapi --output docs/openapi.json`"
    )


def test_openapi_documents_problem_json_errors_and_operation_ids():
    doc = openapi_document()
    operation_ids = {
        op["operationId"]
        for path in doc["paths"].values()
        for op in path.values()
        if isinstance(op, dict) and "operationId" in op
    }
    assert {
        "createOrg",
        "createProject",
        "recordFinding",
        "listFindings",
        "listAudit",
        "health",
        "ready",
    } <= operation_ids


def test_app_builds_without_deprecation_warnings():
    """Every handler parameter is explicit (Litestar 3 drops inferred dependencies, inferred
    path/query parameters, `Parameter(query=/header=)` and bodies without a marker)."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        app = create_app(offline_context())
        assert app.openapi_schema.paths  # the schema is built too, not only the routes
    deprecations = [str(w.message) for w in caught if issubclass(w.category, DeprecationWarning)]
    assert deprecations == []


def test_api_modules_import_without_deprecation_warnings():
    """Parameter declarations warn when their module is imported: check in a fresh interpreter."""
    code = "from services.api.openapi import openapi_document; openapi_document()"
    result = subprocess.run(
        [sys.executable, "-W", "error::DeprecationWarning", "-c", code],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-2000:]
