"""Input guard: what every request must be before a handler sees it (HTTP boundary).

* Path and query string: no control character or lone surrogate once percent-decoded
  (`/v1/orgs/x%00/projects`, `?actor=%00`) -> 400 `invalid-request`.
* A route that takes a JSON body (`data`) gets JSON: another (or no) content type is 415
  `unsupported-media-type`; the body is read whole up to `max_body_bytes` (413 beyond) and
  its nesting checked, cheaply and before anything is decoded (400 beyond `MAX_JSON_DEPTH`).
  Routes that stream their own body (scan report uploads) are left alone.
"""

from __future__ import annotations

import json
import re
from typing import Any
from urllib.parse import unquote_to_bytes

from litestar.enums import ScopeType
from litestar.types import ASGIApp, Receive, ReceiveMessage, Scope, Send

from contracts.text import CONTROL
from services.api.problems import PROBLEM_JSON, TYPE_BASE

#: The deepest nesting of arrays and objects a JSON command body may have.
MAX_JSON_DEPTH = 64
#: JSON strings (escapes included), removed before counting brackets.
_STRINGS = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"', re.DOTALL)
_NOT_BRACKETS = bytes(b for b in range(256) if b not in b"[]{}")
_JSON_TYPE = re.compile(r"^application/(?:[\w.+-]+\+)?json$")


def json_too_deep(body: bytes, limit: int = MAX_JSON_DEPTH) -> bool:
    """Whether `body` nests arrays/objects deeper than `limit` (or has unbalanced brackets).

    Linear and in C: strings are cut out, only brackets kept; a body with at most `limit`
    opening brackets cannot be too deep, one with more than `limit` opened in a row is;
    otherwise each pass removes the innermost level.
    """
    brackets = _STRINGS.sub(b"", body).translate(None, _NOT_BRACKETS)
    if brackets.count(b"[") + brackets.count(b"{") <= limit:
        return False
    if re.search(rb"[\[{]{%d}" % (limit + 1), brackets):
        return True  # more than `limit` opened in a row: the usual shape of a nesting bomb
    for _ in range(limit):
        shorter = brackets.replace(b"[]", b"").replace(b"{}", b"")
        if not shorter:
            return False
        if len(shorter) == len(brackets):
            return True  # unbalanced: not JSON anyway
        brackets = shorter
    return True


def is_json_media_type(content_type: str) -> bool:
    media = content_type.split(";", 1)[0].strip().lower()
    return bool(_JSON_TYPE.match(media))


def _query_text(query: bytes) -> str:
    return unquote_to_bytes(query.replace(b"+", b" ")).decode("utf-8", "replace")


def input_guard(max_body_bytes: int) -> Any:
    """Litestar middleware factory (runs after routing: the handler is known)."""

    def factory(app: ASGIApp) -> ASGIApp:
        async def middleware(scope: Scope, receive: Receive, send: Send) -> None:
            if scope["type"] != ScopeType.HTTP:
                await app(scope, receive, send)
                return
            path = str(scope.get("path", ""))
            if CONTROL.search(path):
                await _problem(send, 400, "invalid-request", "the path holds a control character")
                return
            if CONTROL.search(_query_text(scope.get("query_string", b""))):
                await _problem(
                    send, 400, "invalid-request", "the query string holds a control character"
                )
                return
            handler = scope.get("route_handler")
            takes_json = handler is not None and "data" in handler.parsed_fn_signature.parameters
            if not takes_json:
                await app(scope, receive, send)
                return
            headers = dict(scope.get("headers", []))
            content_type = headers.get(b"content-type", b"").decode("latin-1")
            body, too_large = await _read_body(receive, max_body_bytes)
            if too_large:
                detail = f"the body is larger than {max_body_bytes} bytes"
                await _problem(send, 413, "payload-too-large", detail)
                return
            if body and not is_json_media_type(content_type):
                detail = f"this route takes application/json, not {content_type or 'no type'!r}"
                await _problem(send, 415, "unsupported-media-type", detail)
                return
            if json_too_deep(body):
                detail = f"the JSON body is malformed or nested deeper than {MAX_JSON_DEPTH}"
                await _problem(send, 400, "invalid-request", detail)
                return
            await app(scope, _replay(body, receive), send)

        return middleware

    return factory


async def _read_body(receive: Receive, limit: int) -> tuple[bytes, bool]:
    """The whole body, or (what was read, True) as soon as it exceeds `limit`."""
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] != "http.request":
            break
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            return b"", True
        chunks.append(chunk)
        if not message.get("more_body", False):
            break
    return b"".join(chunks), False


def _replay(body: bytes, receive: Receive) -> Receive:
    sent = False

    async def replayed() -> ReceiveMessage:
        nonlocal sent
        if sent:
            return await receive()
        sent = True
        message: ReceiveMessage = {"type": "http.request", "body": body, "more_body": False}
        return message

    return replayed


async def _problem(send: Send, status: int, code: str, detail: str) -> None:
    body = json.dumps(
        {
            "type": TYPE_BASE + code,
            "title": code.replace("-", " ").capitalize(),
            "status": status,
            "detail": detail,
        }
    ).encode()
    start: Any = {
        "type": "http.response.start",
        "status": status,
        "headers": [
            (b"content-type", PROBLEM_JSON.encode()),
            (b"content-length", str(len(body)).encode()),
        ],
    }
    await send(start)
    end: Any = {"type": "http.response.body", "body": body}
    await send(end)
