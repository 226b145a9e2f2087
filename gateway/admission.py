"""``GET /v1/people/{nhs}/admission-summary``: what a hospital team needs on admission, in one read.

Built only from the gateway's own tables (the person's portfolio document, and the recent changes
the consumer keeps beside it, of which the last 30 days' are shown), so it answers fast even when
every domain service is down. Each part says how
fresh it is: the time of the newest event from its service that the gateway applied. Consent is the
portfolio's: a withheld initiative's part is empty and says it was withheld.
"""
from __future__ import annotations

from datetime import date, datetime, timezone

import flask_smorest
import marshmallow as ma
from flask import g, jsonify

from coproduction.events import iso, now

from . import api, policy, portfolio

bp = flask_smorest.Blueprint("admission", __name__, url_prefix="/v1/people",
                             description="The admission summary, from the gateway's own projection")

TOP_PRIORITIES = 5
RECENT_DECISIONS = 10
OPEN_DECISION = ("opened", "deferred")
LIVE_BUDGET = ("agreed", "active", "under_review", "suspended")
COURSE_IN_PROGRESS = ("referred", "enrolled", "active")

#: budget line-item category -> what an admission means for that support
ON_ADMISSION = {
    "personal_assistant": "Tell the personal assistant and the budget holder; by agreement a PA may keep "
                          "supporting the person in hospital, otherwise the hours pause.",
    "care_agency": "Home care visits need pausing while the person is in hospital, and restarting for discharge.",
    "therapy": "Therapy sessions will be missed: tell the therapist.",
    "equipment": "Check the equipment at home still meets the person's needs before discharge.",
    "physical_activity": "Paused during the admission; the budget holder may ask for it to be extended.",
    "weight_management": "Sessions will be missed: tell the provider.",
    "transport": "Booked transport needs cancelling or rearranging.",
    "course": "Course sessions will be missed: tell the provider.",
    "peer_support": "Tell the group the person is in hospital.",
}
ON_ADMISSION_OTHER = "Check with the budget holder whether this support continues during the admission."


class AdmissionSummarySchema(ma.Schema):
    nhs_number = ma.fields.String()
    generated_at = ma.fields.String()
    portfolio_updated_at = ma.fields.String(allow_none=True)
    answered_from = ma.fields.String()
    withheld = ma.fields.List(ma.fields.String())
    priorities = ma.fields.Dict()
    decisions = ma.fields.Dict()
    plan = ma.fields.Dict()
    budget = ma.fields.Dict()
    courses = ma.fields.Dict()
    recent_changes = ma.fields.Dict()


def _parse(moment: str | None) -> datetime | None:
    if not moment:
        return None
    try:
        parsed = datetime.fromisoformat(moment.replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=timezone.utc)


def _freshness(document: dict, services: list[str], at: datetime) -> dict:
    """Per service: the newest event applied from it, and how old that is; null if none yet."""
    out = {}
    for service in services:
        held = (document.get("freshness") or {}).get(service)
        if not held:
            out[service] = None
            continue
        last = _parse(held.get("last_event_at"))
        out[service] = {
            "last_event_type": held.get("last_event_type"),
            "last_event_at": held.get("last_event_at"),
            "applied_at": held.get("applied_at"),
            "age_seconds": int((at - last).total_seconds()) if last else None,
        }
    return out


def _part(withheld: set[str], services: list[str], document: dict, at: datetime, **content) -> dict:
    shown = [s for s in services if s not in withheld]
    part = dict(content, freshness=_freshness(document, shown, at))
    part["withheld"] = sorted(set(services) & withheld)
    return part


# -- the parts ----------------------------------------------------------------------------------
def _priorities(doc: dict) -> dict:
    current = doc.get("priorities") or []
    items = [{k: p.get(k) for k in ("id", "text", "category", "status", "rank", "position",
                                      "expressed_by_person", "initiatives", "sources", "conflicts")}
             for p in current[:TOP_PRIORITIES]]
    return {"items": items, "total": len(current)}


def _decision(d: dict) -> dict:
    outcome = d.get("outcome") or None
    deferral = d.get("deferral") or None
    follow_up = d.get("follow_up") or {}
    return {
        "id": d.get("id"), "status": d.get("status"), "setting": d.get("setting"),
        "encounter_id": d.get("encounter_id"), "question": d.get("question"),
        "options": [o.get("label") for o in d.get("options") or []],
        "priorities": [{"id": p.get("id"), "text": p.get("text")} for p in d.get("priorities") or []],
        "chosen_option": outcome.get("chosen_option_label") if outcome else None,
        "persons_reason": outcome.get("persons_reason") if outcome else None,
        "clinician": (outcome or {}).get("clinician") or d.get("lead_clinician"),
        "recorded_at": outcome.get("recorded_at") if outcome else None,
        "deferral": deferral,
        "revisit_by": follow_up.get("revisit_by") or (deferral or {}).get("revisit_by"),
        "follow_up": follow_up,
        "supersedes": d.get("supersedes"),
        "updated_at": d.get("updated_at"),
    }


def _decisions(doc: dict) -> dict:
    all_ = doc.get("decisions") or []  # newest first
    open_ = [_decision(d) for d in all_ if d.get("status") in OPEN_DECISION]
    recorded = [d for d in all_ if d.get("status") == "recorded"]
    recorded.sort(key=lambda d: (d.get("outcome") or {}).get("recorded_at") or d.get("updated_at") or "",
                  reverse=True)
    return {"open": open_, "recent": [_decision(d) for d in recorded[:RECENT_DECISIONS]]}


def _plan(doc: dict) -> dict:
    plan = doc.get("plan")
    if not plan:
        return {"current": None}
    contacts = []
    if plan.get("care_coordinator"):
        contacts.append({"role": "care coordinator", "name": plan["care_coordinator"]})
    if plan.get("agreed_by"):
        contacts.append({"role": "agreed the care and support plan", "name": plan["agreed_by"]})
    return {"current": {
        "id": plan.get("id"), "status": plan.get("status"), "conditions": plan.get("conditions") or [],
        "goals": [{k: g.get(k) for k in ("description", "target", "lifecycle_status", "achievement_status")}
                  for g in plan.get("goals") or []],
        "next_review_date": plan.get("next_review_date"),
        "care_coordinator": plan.get("care_coordinator"),
        "agreed_by": plan.get("agreed_by"), "agreed_at": plan.get("agreed_at"),
        "person_agreed": plan.get("person_agreed"), "contacts": contacts,
        "updated_at": plan.get("updated_at"),
    }}


def _current(item: dict, today: date) -> bool:
    start, end = item.get("effective_from"), item.get("effective_to")
    try:
        if start and date.fromisoformat(start[:10]) > today:
            return False
        if end and date.fromisoformat(end[:10]) < today:
            return False
    except ValueError:
        return True
    return True


def _holder(budget: dict) -> dict:
    holder = dict(budget.get("holder") or {})
    holdings = budget.get("holdings") or []
    who = {"direct_payment": "paid to the budget holder as a direct payment",
           "third_party": "held by a third-party organisation",
           "notional": "held by the NHS commissioner (notional)"}
    holder["holdings"] = [{"type": h.get("type"), "pence": h.get("pence"), "managed_by": h.get("managed_by"),
                           "means": who.get(h.get("type"), h.get("type"))} for h in holdings]
    return holder


def _budget(doc: dict, today: date) -> dict:
    budget = doc.get("budget")
    if not budget or budget.get("status") not in LIVE_BUDGET:
        return {"current": None, "affected_support": []}
    affected = []
    for item in budget.get("line_items") or []:
        if not _current(item, today):
            continue
        category = item.get("category")
        affected.append({
            "id": item.get("id"), "description": item.get("description"), "category": category,
            "sector": item.get("sector"), "provider": item.get("provider"), "pence": item.get("pence"),
            "frequency": item.get("frequency"), "paid_from": item.get("paid_from"),
            "priority_ids": item.get("priority_ids") or [],
            "on_admission": ON_ADMISSION.get(category, ON_ADMISSION_OTHER),
        })
    return {
        "current": {"id": budget.get("id"), "kind": budget.get("kind"), "status": budget.get("status"),
                    "annual_pence": budget.get("annual_pence"), "currency": budget.get("currency", "GBP"),
                    "holder": _holder(budget), "care_coordinator": budget.get("care_coordinator"),
                    "next_review_date": budget.get("next_review_date"),
                    "suspension": budget.get("suspension"), "updated_at": budget.get("updated_at")},
        "affected_support": affected,
    }


def _courses(doc: dict) -> dict:
    out = []
    for course in doc.get("groups") or []:
        if not course.get("in_progress", course.get("status") in COURSE_IN_PROGRESS):
            continue
        plans = sorted(course.get("action_plans") or [], key=lambda p: (p.get("week") or 0, p.get("recorded_at") or ""))
        out.append({
            "id": course.get("id"), "title": course.get("title"), "programme": course.get("programme"),
            "status": course.get("status"), "starts_on": course.get("starts_on"), "sessions": course.get("sessions"),
            "sessions_attended": course.get("sessions_attended"),
            "completion_min_sessions": course.get("completion_min_sessions"),
            "latest_action_plan": plans[-1] if plans else None,
            "on_admission": "Sessions will be missed: tell the course provider; the person may be able to "
                            "catch up or join a later course.",
            "updated_at": course.get("updated_at"),
        })
    return {"in_progress": out}


def _recent_changes(decision, hidden: set[str]) -> dict:
    """The person's changes since the window's start (the rule's ``changes_days``), the newest
    ``CHANGES_SHOWN`` of them, as the consumer keeps them with the document (portfolio.recent_changes)."""
    kept = decision.changes or {"at": [], "items": []}
    since = decision.changes_since.timestamp()
    window = [item for at, item in zip(kept["at"], kept["items"]) if at >= since]
    items = [item for item in window[:portfolio.CHANGES_SHOWN] if item["service"] not in hidden]
    items.sort(key=lambda c: (c["time"], c["position"]), reverse=True)
    # more than are kept may fall in the window when even the oldest kept one does
    more = len(window) > portfolio.CHANGES_SHOWN or (len(kept["at"]) == portfolio.CHANGES_KEPT
                                                     and kept["at"][-1] >= since)
    return {"since": iso(decision.changes_since), "items": items, "truncated": more,
            "freshness": {"change_log": {"last_event_at": items[0]["time"] if items else None}}}


@bp.route("/<nhs_number>/admission-summary", parameters=api.nhs_path())
@bp.response(200, AdmissionSummarySchema)
def admission_summary(nhs_number):
    """What matters to the person, open and recent decisions, the plan, budget-funded support an
    admission affects, courses in progress, and the last 30 days' changes; each part with its freshness."""
    _who, hidden, document = api.person()
    doc = portfolio.for_role(document, hidden)
    at = now()
    updated = g.portfolio_updated_at
    changes = _recent_changes(policy.current(), hidden)
    contributing = sorted({s["service"] for p in doc.get("priorities") or [] for s in p.get("sources", [])}
                          or set(portfolio.SECTIONS) - hidden)
    return jsonify({
        "nhs_number": nhs_number,
        "generated_at": iso(at),
        "portfolio_updated_at": iso(updated) if updated else None,
        "answered_from": "the gateway's own projection (no service was called)",
        "withheld": doc.get("withheld", []),
        "priorities": _part(hidden, contributing, doc, at, **_priorities(doc)),
        "decisions": _part(hidden, ["decisions"], doc, at, **_decisions(doc)),
        "plan": _part(hidden, ["plans"], doc, at, **_plan(doc)),
        "budget": _part(hidden, ["budgets"], doc, at, **_budget(doc, at.date())),
        "courses": _part(hidden, ["groups"], doc, at, **_courses(doc)),
        "recent_changes": changes,
    })
