"""The canonical form of a policy document: plain data, and its digest."""

from __future__ import annotations

import hashlib
from typing import Any

import msgspec

from contracts.policy import PolicyDocument


def policy_as_dict(doc: PolicyDocument) -> dict[str, Any]:
    """The document as plain JSON-able data, fields in contract order (absent ones as null)."""
    data: dict[str, Any] = msgspec.to_builtins(doc)
    return data


def policy_digest(doc: PolicyDocument) -> str:
    """`sha256:<hex>` of the canonical JSON (sorted keys): equal policies, equal digests."""
    canonical = msgspec.json.encode(policy_as_dict(doc), order="sorted")
    return "sha256:" + hashlib.sha256(canonical).hexdigest()
