"""The CLI's HTTP client: finds the API and the key of a running `pearl up`, maps problems."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import httpx

from domain.errors import InvalidInput, PearlError


class ApiProblem(PearlError):
    """The API answered with an RFC 9457 problem."""

    code = "api-problem"


def api_url(home: Path) -> str:
    url = os.environ.get("PEARL_API_URL")
    if url:
        return url.rstrip("/")
    path = home / "api.url"
    if path.exists():
        return path.read_text().strip().rstrip("/")
    return "http://127.0.0.1:8000"


def api_key(home: Path) -> str:
    key = os.environ.get("PEARL_API_KEY")
    if key:
        return key.strip()
    path = home / "admin.key"
    if path.exists():
        return path.read_text().strip()
    raise InvalidInput("no API key: set PEARL_API_KEY or run `pearl up` (writes .pearl/admin.key)")


def client(home: Path, timeout: float = 300.0) -> httpx.Client:
    return httpx.Client(
        base_url=api_url(home),
        timeout=timeout,
        headers={"Authorization": f"Bearer {api_key(home)}"},
    )


def checked(response: httpx.Response) -> Any:
    """The JSON body of a 2xx answer; ApiProblem with the problem's detail otherwise."""
    if response.is_success:
        return response.json()
    try:
        body = response.json()
        detail = body.get("detail") or body.get("title") or response.text
    except ValueError:
        detail = response.text[:200]
    raise ApiProblem(f"{response.status_code}: {detail}")
