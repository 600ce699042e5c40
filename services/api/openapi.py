"""The OpenAPI document, generated from the code without any server connection."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from contracts.docs_text import cleaned

if TYPE_CHECKING:
    from services.api.context import ApiContext


def offline_context() -> ApiContext:
    """An API context with no Application, pool or bus: enough to build the app's routes."""
    from services.api.context import ApiContext
    from services.settings import Settings

    return ApiContext(settings=Settings(), pearl=None, pool=None)  # type: ignore[arg-type]


def openapi_document() -> dict[str, Any]:
    from services.api.app import create_app

    schema = create_app(offline_context()).openapi_schema.to_schema()
    return cleaned(dict(schema))
