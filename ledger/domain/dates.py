"""Calendar arithmetic the rules share: months of rent, months of service."""

from __future__ import annotations

from calendar import monthrange
from datetime import date, timedelta


def calendar_months(start: date, end: date) -> int:
    """Calendar months from `start` to `end`, both included, a part month counting whole."""
    return (end.year - start.year) * 12 + end.month - start.month + 1


def add_months(day: date, months: int) -> date:
    """The same day `months` later, or that month's last day when it has no such day."""
    year, month = divmod(day.month - 1 + months, 12)
    year, month = day.year + year, month + 1
    return date(year, month, min(day.day, monthrange(year, month)[1]))


def whole_months(start: date, last_day: date) -> int:
    """Whole months from `start` through `last_day` included (2024-01-05 to 2029-01-04
    is 60; 2024-01-31 to 2024-02-28 is 1): the months a talent served or promised."""
    end = last_day + timedelta(days=1)
    months = (end.year - start.year) * 12 + end.month - start.month
    if add_months(start, months) > end:
        months -= 1
    return max(months, 0)
