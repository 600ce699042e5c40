"""Document the problem+json answers every operation may give (RFC 9457) in the OpenAPI.

Litestar documents only a route's success and its own 400 shape; PeaRL answers every error
with `application/problem+json` (`problems.py`, `guard.py`). This adds those answers to each
operation so clients (and schemathesis) can hold the API to its document.
"""

from __future__ import annotations

from litestar import Litestar
from litestar.openapi.spec import (
    Components,
    OpenAPIMediaType,
    OpenAPIResponse,
    OpenAPIType,
    Reference,
    Schema,
)

from services.api.problems import PROBLEM_JSON

#: What any operation may answer besides its success.
PROBLEM_STATUSES = {
    400: "Invalid request (malformed, wrong types, control characters, too deeply nested)",
    401: "No valid credential",
    403: "Not allowed",
    404: "Not found (or another org's)",
    405: "Method not allowed",
    409: "Conflict with the current state",
    413: "Body too large",
    415: "Body is not JSON",
    422: "Refused by a rule (nothing was recorded)",
    429: "Rate limited (see Retry-After)",
    503: "Not ready, read models behind, or timed out (see Retry-After)",
}

PROBLEM_SCHEMA = Schema(
    type=OpenAPIType.OBJECT,
    title="Problem",
    description="RFC 9457 problem details; `type` is `urn:pearl:problem:<code>`",
    required=["type", "title", "status", "detail"],
    properties={
        "type": Schema(type=OpenAPIType.STRING),
        "title": Schema(type=OpenAPIType.STRING),
        "status": Schema(type=OpenAPIType.INTEGER),
        "detail": Schema(type=OpenAPIType.STRING),
        "instance": Schema(type=OpenAPIType.STRING),
    },
)


def document_problems(app: Litestar) -> None:
    """Add the Problem schema and the problem answers to every operation of `app`."""
    schema = app.openapi_schema
    if schema.components is None:
        schema.components = Components()
    if schema.components.schemas is None:
        schema.components.schemas = {}
    schema.components.schemas["Problem"] = PROBLEM_SCHEMA
    content = {PROBLEM_JSON: OpenAPIMediaType(schema=Reference(ref="#/components/schemas/Problem"))}
    for item in (schema.paths or {}).values():
        for method in ("get", "put", "post", "delete", "patch"):
            operation = getattr(item, method, None)
            if operation is None:
                continue
            responses = operation.responses if operation.responses is not None else {}
            for status, description in PROBLEM_STATUSES.items():
                responses[str(status)] = OpenAPIResponse(description=description, content=content)
            operation.responses = responses
