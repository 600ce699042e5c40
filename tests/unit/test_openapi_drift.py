"""The committed OpenAPI document matches the code (regenerate with `pearl openapi`)."""

from __future__ import annotations

from pathlib import Path

from contracts.docs_text import render
from services.api.openapi import openapi_document

COMMITTED = Path(__file__).resolve().parents[2] / "docs" / "openapi.json"


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
