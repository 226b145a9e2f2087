"""How values are written on the pages: the labels of services and roles, and the template filters
(registered on the blueprint by gateway/pages/views.py under the names of :data:`FILTERS`)."""
from __future__ import annotations

from datetime import datetime, timezone

from coproduction.service import services

SERVICE_LABEL = {spec.name: spec.label for spec in services()}
SHORT_LABEL = {spec.name: spec.short_label for spec in services()}
ROLE_TEAMS = {"hospital": "hospital teams", "gp": "GP practices", "social_care": "social care teams",
              "community": "community course providers", "admin": "administrators"}
ROLE_LABEL = {"hospital": "Hospital", "gp": "GP", "social_care": "Social care", "community": "Community",
              "admin": "Administrator"}


def _parse(value) -> datetime | None:
    if value is None or value == "":
        return None
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=timezone.utc)
    try:
        moment = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    except ValueError:
        return None
    return moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc)


def when(value) -> str:
    """25 Nov 2026 10:00 (UTC)."""
    moment = _parse(value)
    return moment.astimezone(timezone.utc).strftime("%-d %b %Y %H:%M") if moment else (value or "—")


def day(value) -> str:
    """25 Nov 2026 (dates stay dates)."""
    if not value:
        return "—"
    try:
        return datetime.fromisoformat(str(value)[:10]).strftime("%-d %b %Y")
    except ValueError:
        return str(value)


def ago(value, now: datetime | None = None) -> str:
    moment = _parse(value)
    if moment is None:
        return "never"
    seconds = max(0, ((now or datetime.now(timezone.utc)) - moment).total_seconds())
    for size, name in ((86400, "day"), (3600, "hour"), (60, "minute")):
        if seconds >= size:
            n = int(seconds // size)
            return f"{n} {name}{'s' if n != 1 else ''} ago"
    return "just now"


def money(pence, currency: str = "GBP") -> str:
    if pence is None:
        return "—"
    sign = "£" if (currency or "GBP") == "GBP" else f"{currency} "
    pounds, rest = divmod(int(pence), 100)
    return f"{sign}{pounds:,}.{rest:02d}"


def nhs(number: str) -> str:
    """NHS numbers are shown 3 3 4, as on NHS documents."""
    number = str(number)
    return f"{number[:3]} {number[3:6]} {number[6:]}" if len(number) == 10 else number


def label(value) -> str:
    if value is None:
        return "—"
    text = str(value).replace("_", " ").replace("-", " ")
    return text[:1].upper() + text[1:]


def month(value: str) -> str:
    """2026-11 -> Nov 2026."""
    try:
        return datetime.strptime(value, "%Y-%m").strftime("%b %Y")
    except ValueError:
        return value


def percent(rate) -> str:
    return "—" if rate is None else f"{round(rate * 100)}%"


FILTERS = {"when": when, "day": day, "ago": ago, "money": money, "nhs": nhs, "label": label, "month": month,
           "percent": percent}
