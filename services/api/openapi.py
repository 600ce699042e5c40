"""The OpenAPI document, generated from the code without any server connection."""

from __future__ import annotations

from typing import Any

from contracts.docs_text import cleaned


def openapi_document() -> dict[str, Any]:
    from services.api.app import create_app
    from services.api.context import ApiContext
    from services.settings import Settings

    ctx = ApiContext(settings=Settings(), pearl=None, pool=None)  # type: ignore[arg-type]
    schema = create_app(ctx).openapi_schema.to_schema()
    return cleaned(dict(schema))
