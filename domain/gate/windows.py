"""Freeze windows: whether one is open at a moment, and when the freeze ends (pure)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Literal

from contracts.policy import Window

_WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
_DAY = 86_400
_FREEZE_HORIZON = timedelta(days=366)


def window_end(window: Window, now: datetime) -> datetime | Literal[False] | None:
    """False when the window is closed at `now`; else when it closes (None: never)."""
    start, end = _aware(window.start), _aware(window.end)
    if start is None and end is None and window.days is None:
        return False
    if (start is not None and now < start) or (end is not None and now >= end):
        return False
    if window.days is None:
        return end
    weekly = _weekly_end(window, now)
    if weekly is None:
        return False
    return weekly if end is None else min(weekly, end)


def _weekly_end(window: Window, now: datetime) -> datetime | None:
    """When the weekly window open at `now` closes, or None when it is closed."""
    days = window.days or ()
    today, yesterday = _WEEKDAYS[now.weekday()], _WEEKDAYS[(now.weekday() - 1) % 7]
    midnight = now.replace(hour=0, minute=0, second=0, microsecond=0)
    second = now.hour * 3600 + now.minute * 60 + now.second
    opens = _clock(window.from_) if window.from_ else 0
    closes = _clock(window.to) if window.to else _DAY
    if closes > opens:
        inside = today in days and opens <= second < closes
        return midnight + timedelta(seconds=closes) if inside else None
    # Wraps midnight (to <= from): from `from` on a listed day to `to` the next day.
    if today in days and second >= opens:
        return midnight + timedelta(days=1, seconds=closes)
    if yesterday in days and second < closes:
        return midnight + timedelta(seconds=closes)
    return None


def frozen_until(windows: Sequence[Window], now: datetime) -> datetime | None:
    """The first moment no window is open (None: not within a year, or never)."""
    moment = now
    while moment - now <= _FREEZE_HORIZON:
        ends = [end for w in windows if (end := window_end(w, moment)) is not False]
        if not ends:
            return moment
        if any(end is None for end in ends):
            return None
        moment = max(end for end in ends if end is not None)
    return None


def _clock(value: str) -> int:
    hours, minutes = value.split(":")
    return int(hours) * 3600 + int(minutes) * 60


def _aware(value: datetime | None) -> datetime | None:
    if value is None:
        return None
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
