"""Composing one person's portfolio document from the aggregates the gateway holds.

The document is recomposed by the consumer whenever one of the person's aggregates changes, so a
read is one indexed row; consent (what a role may see) is applied at read time by :func:`for_role`.
"""
from __future__ import annotations

from datetime import datetime, timezone

from coproduction.events import iso, service_of
from coproduction.service import service_names

from .priorities import Held, merge

#: the services whose aggregates the document holds
SECTIONS = service_names()
#: the newest changes the document's timeline shows
TIMELINE = 50
#: the most changes the admission summary shows (its window's, gateway/admission.py); one more is
#: kept with the document, so the summary can say there were more
CHANGES_SHOWN = 100
CHANGES_KEPT = CHANGES_SHOWN + 1
ACTIVE_FIRST = {"active": 0, "agreed": 0, "under_review": 0, "on_hold": 1, "suspended": 1,
                "planning": 2, "requested": 2, "draft": 2}


def _public(state: dict) -> dict:
    return {k: v for k, v in state.items() if not k.startswith("_")}


def _pick(rows: list) -> dict | None:
    """The one current plan or budget: live before finished, then the newest."""
    if not rows:
        return None
    best = sorted(rows, key=lambda r: (ACTIVE_FIRST.get(r["state"].get("status"), 9),
                                       _neg_time(r["event_time"])))[0]
    return _section(best)


def _neg_time(moment: datetime) -> float:
    """Newest first as a sort key."""
    return -_epoch(moment)


def _epoch(moment: datetime) -> float:
    """Seconds since the epoch; a naive time (SQLite gives those back) is taken as UTC, as iso does."""
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)
    return moment.timestamp()


def _section(row) -> dict:
    return dict(_public(row["state"]), id=row["aggregate_id"], version=row["version"],
                updated_at=iso(row["event_time"]))


def compose(nhs_number: str, rows: list, recent: list) -> dict:
    """The document, from the person's aggregates and their newest changes ``(position, time, event)``,
    the newest first (at least ``TIMELINE`` of them)."""
    by_service: dict[str, list] = {s: [] for s in SECTIONS}
    for row in rows:
        by_service.setdefault(row["service"], []).append(row)

    agreed_plans = [r for r in by_service["plans"] if r["state"].get("agreed_at")]
    newest_agreed = max(agreed_plans, key=lambda r: r["state"]["agreed_at"], default=None)
    held = []
    for row in rows:
        is_newest_agreed = newest_agreed is not None and row is newest_agreed
        for p in row["state"].get("priorities", []):
            held.append(Held(row["service"], row["aggregate_id"], p,
                             p.get("rank") if is_newest_agreed else None))
    merged = merge(held)

    freshness = {}
    for service, service_rows in by_service.items():
        if service_rows:
            newest = max(service_rows, key=lambda r: r["event_time"])
            freshness[service] = {"last_event_type": newest["last_type"],
                                  "last_event_at": iso(newest["event_time"]),
                                  "applied_at": iso(max(r["applied_at"] for r in service_rows))}
        else:
            freshness[service] = None

    timeline = []
    for _position, _time, event in recent[:TIMELINE]:
        timeline.append({"type": event["type"], "time": event["time"], "event_id": event["id"],
                         "service": service_of(event), "ref": event["aggregateid"],
                         "version": event["aggregateversion"], "summary": _timeline_summary(event)})
    # by the services' own clocks and versions, so a rebuilt projection gives the same timeline
    timeline.sort(key=lambda t: (t["time"], t["ref"], t["version"]), reverse=True)

    return {
        "nhs_number": nhs_number,
        "priorities": merged["current"],
        "past_priorities": merged["past"],
        "plan": _pick(by_service["plans"]),
        "plans": [_section(r) for r in sorted(by_service["plans"], key=lambda r: r["event_time"])],
        "budget": _pick(by_service["budgets"]),
        "decisions": [_section(r) for r in sorted(by_service["decisions"], key=lambda r: r["event_time"],
                                                   reverse=True)],
        # courses in progress first, then finished ones (completed, not completed, withdrawn); newest first
        "groups": [_section(r) for r in sorted(by_service["groups"], key=lambda r: (
            not r["state"].get("in_progress", False), _neg_time(r["event_time"])))],
        "timeline": timeline,
        "freshness": freshness,
    }


def _timeline_summary(event: dict) -> str:
    data = event.get("data", {})
    kind, action = event["type"].split(".", 1)
    detail = data.get("title") or data.get("question") or data.get("reason") or ""
    if not detail and isinstance(data.get("change"), dict):  # budgets: what changed, and why
        change = data["change"]
        detail = (change.get("summary") or "") + (f" (because: {change['reason']})" if change.get("reason") else "")
    return f"{kind} {action}" + (f": {detail}" if detail else "")


def recent_changes(recent: list) -> dict:
    """What the admission summary shows of the newest changes ``(position, time, event)``, the newest
    first, kept beside the document: each change's item, and its time as seconds since the epoch
    (``at``), so a read picks its window's without parsing a time or an event."""
    kept = recent[:CHANGES_KEPT]
    return {"at": [_epoch(moment) for _position, moment, _event in kept],
            "items": [{"position": position, "time": event["time"], "type": event["type"],
                       "service": service_of(event), "ref": event["aggregateid"],
                       "summary": _admission_summary(event)} for position, _moment, event in kept]}


def _admission_summary(event: dict) -> str:
    """One line on a change, as the admission summary says it."""
    data = event.get("data") or {}
    kind, action = event["type"].split(".", 1)
    if kind == "decision":
        outcome = data.get("outcome") or {}
        text = f"decision {action}: {data.get('question', '')}"
        if event["type"] == "decision.recorded" and outcome.get("chosen_option_label"):
            text += f" → {outcome['chosen_option_label']}"
        return text
    if kind == "budget":
        change = data.get("change") or {}
        return f"budget {action}" + (f": {change['summary']}" if change.get("summary") else "")
    if kind == "group":
        return f"course {action}" + (f": {data['title']}" if data.get("title") else "")
    if kind == "plan":
        return f"care and support plan {action}" + (f" ({data['status']})" if data.get("status") else "")
    return f"{kind} {action}"


#: portfolio section -> the service whose data it shows
SECTION_SERVICE = {"plan": "plans", "plans": "plans", "budget": "budgets", "decisions": "decisions",
                   "groups": "groups"}


def whole(document_text: str) -> str:
    """What :func:`for_role` makes of a stored document (its JSON text, an object) when nothing is
    withheld, made from the text itself: the document with ``"withheld": []``."""
    members = document_text.strip()[1:-1].strip()
    return "{" + members + (", " if members else "") + '"withheld": []}'


def for_role(document: dict, withheld_services: set[str]) -> dict:
    """The document as a role may see it: withheld initiatives removed, and said so."""
    if not withheld_services:
        return dict(document, withheld=[])
    doc = dict(document)
    for section, service in SECTION_SERVICE.items():
        if service in withheld_services and section in doc:
            doc[section] = None if section in ("plan", "budget") else []

    def visible(items):
        out = []
        for item in items:
            sources = [s for s in item["sources"] if s["service"] not in withheld_services]
            if sources:
                out.append(dict(item, sources=sources,
                                initiatives=sorted({s["service"] for s in sources}),
                                conflicts=[c for c in item["conflicts"]
                                           if c["newer"]["service"] not in withheld_services
                                           and c["older"]["service"] not in withheld_services]))
        return out

    doc["priorities"] = visible(doc["priorities"])
    doc["past_priorities"] = visible(doc["past_priorities"])
    doc["timeline"] = [t for t in doc["timeline"] if t["service"] not in withheld_services]
    doc["freshness"] = {k: v for k, v in doc["freshness"].items() if k not in withheld_services}
    doc["withheld"] = sorted(withheld_services)
    return doc
