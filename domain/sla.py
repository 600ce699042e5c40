"""Org policy defaults used when recording findings (SLA days by severity)."""

from __future__ import annotations

from datetime import datetime, timedelta

DEFAULT_SLA_DAYS: dict[str, int] = {"critical": 7, "high": 30, "medium": 90, "low": 180}


def sla_days_for(severity: str, sla_days: dict[str, int] | None = None) -> int | None:
    return (sla_days or DEFAULT_SLA_DAYS).get(severity)


def sla_due(severity: str, seen_at: datetime, sla_days: dict[str, int] | None = None) -> str | None:
    """The date a finding of this severity must be fixed by, or None when it has no SLA."""
    days = (sla_days or DEFAULT_SLA_DAYS).get(severity)
    return None if days is None else (seen_at + timedelta(days=days)).isoformat()
