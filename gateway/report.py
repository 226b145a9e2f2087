"""The site's coproduction report: is the portfolio approach working here?

Computed only from the gateway's own tables (``aggregates``: the newest state of every plan, budget,
decision and course place; ``change_log``: every event applied, with its time), so it needs no
domain service to be up. It holds counts, sums and rates only: no NHS number, name, priority text or
anything else about one person (see docs/pages.md, "The site report", for each definition).

``GET /v1/reports/coproduction`` answers it as JSON (bearer token with ``portfolio:read``; ``admin``
includes it); ``/reports/coproduction`` draws it as a web page with charts.
"""
from __future__ import annotations

import json
from collections import Counter
from datetime import date, datetime, timezone

import flask_smorest
import marshmallow as ma
from flask import jsonify
from sqlalchemy import func, select

from coproduction.events import iso, now
from coproduction.http import ctx
from coproduction.service import service_names, services

from .models import aggregates, change_log

SERVICES = service_names()
SERVICE_OF_PREFIX = {spec.event_prefix: spec.name for spec in services()}
#: budgets in force: agreed and not ended (a suspended budget is paused, not ended)
LIVE_BUDGET = ("agreed", "active", "under_review", "suspended")
RECORDED_DECISION = ("recorded", "superseded")
COURSE_IN_PROGRESS = ("referred", "enrolled", "active")
COURSE_FINISHED = ("completed", "not_completed", "withdrawn")
DEFAULT_MONTHS, MAX_MONTHS = 12, 60
#: the series drawn over time, in the order the page shows them
SERIES = {
    "people": "People with a portfolio (running total)",
    "people_two_or_more": "People with two or more initiatives (running total)",
    "plans_agreed_with_person": "Plans agreed with the person (that month)",
    "decisions_recorded_with_priorities": "Decisions recorded with the person's priorities (that month)",
    "budgets_agreed": "Budgets agreed (that month)",
    "courses_completed": "Courses completed (that month)",
}


def _utc(moment: datetime) -> datetime:
    return moment.replace(tzinfo=timezone.utc) if moment.tzinfo is None else moment.astimezone(timezone.utc)


def _month(moment: datetime) -> str:
    return _utc(moment).strftime("%Y-%m")


def _months_back(last: str, count: int) -> list[str]:
    year, month = int(last[:4]), int(last[5:7])
    out = []
    for _ in range(count):
        out.append(f"{year:04d}-{month:02d}")
        month -= 1
        if month == 0:
            year, month = year - 1, 12
    return out[::-1]


def _rate(part: int, whole: int) -> float | None:
    return round(part / whole, 4) if whole else None


def compute(session, months: int = DEFAULT_MONTHS, today: date | None = None) -> dict:
    """The whole report from one database session (read only)."""
    initiatives_of: dict[str, set[str]] = {}
    plans = {"total": 0, "with_priorities": 0, "agreed": 0, "agreed_with_person": 0,
             "with_priorities_and_agreed_with_person": 0, "by_status": {}}
    decisions = {"total": 0, "with_priorities": 0, "recorded": 0, "recorded_with_priorities": 0,
                 "recorded_with_persons_reason": 0, "by_status": {}}
    budgets = {"total": 0, "live": 0, "live_annual_pence": 0, "currency": "GBP", "by_status": {}}
    courses = {"enrolments": 0, "in_progress": 0, "completed": 0, "not_completed": 0, "withdrawn": 0,
               "finished": 0, "completion_rate": None, "by_programme": {}}

    rows = session.execute(select(aggregates.c.service, aggregates.c.nhs_number, aggregates.c.state)
                           .execution_options(yield_per=500))
    for service, nhs_number, state in rows:
        initiatives_of.setdefault(nhs_number, set()).add(service)
        status = state.get("status") or "unknown"
        has_priorities = bool(state.get("priorities"))
        if service == "plans":
            plans["total"] += 1
            plans["by_status"][status] = plans["by_status"].get(status, 0) + 1
            with_person = bool(state.get("agreed_at")) and state.get("person_agreed") is True
            plans["with_priorities"] += has_priorities
            plans["agreed"] += bool(state.get("agreed_at"))
            plans["agreed_with_person"] += with_person
            plans["with_priorities_and_agreed_with_person"] += has_priorities and with_person
        elif service == "decisions":
            decisions["total"] += 1
            decisions["by_status"][status] = decisions["by_status"].get(status, 0) + 1
            recorded = status in RECORDED_DECISION and bool(state.get("outcome"))
            decisions["with_priorities"] += has_priorities
            decisions["recorded"] += recorded
            decisions["recorded_with_priorities"] += recorded and has_priorities
            decisions["recorded_with_persons_reason"] += recorded and bool(
                (state.get("outcome") or {}).get("persons_reason"))
        elif service == "budgets":
            budgets["total"] += 1
            budgets["by_status"][status] = budgets["by_status"].get(status, 0) + 1
            if status in LIVE_BUDGET:
                budgets["live"] += 1
                budgets["live_annual_pence"] += int(state.get("annual_pence") or 0)
        elif service == "groups":
            courses["enrolments"] += 1
            programme = state.get("programme") or "other"
            counts = courses["by_programme"].setdefault(programme, {"enrolments": 0, "completed": 0})
            counts["enrolments"] += 1
            if status in COURSE_IN_PROGRESS:
                courses["in_progress"] += 1
            elif status in COURSE_FINISHED:
                courses[status] += 1
                courses["finished"] += 1
                counts["completed"] += status == "completed"
    courses["completion_rate"] = _rate(courses["completed"], courses["finished"])
    for part in (plans, decisions, budgets):
        part["by_status"] = dict(sorted(part["by_status"].items()))
    courses["by_programme"] = dict(sorted(courses["by_programme"].items()))

    by_count = {str(n): 0 for n in range(1, len(SERVICES) + 1)}
    by_initiative = {s: 0 for s in SERVICES}
    for held in initiatives_of.values():
        by_count[str(min(len(held), len(SERVICES)))] += 1
        for s in held:
            if s in by_initiative:
                by_initiative[s] += 1
    people = {
        "with_portfolio": len(initiatives_of),
        "with_two_or_more_initiatives": sum(1 for held in initiatives_of.values() if len(held) >= 2),
        "by_initiative_count": by_count,
        "by_initiative": by_initiative,
    }
    people["two_or_more_rate"] = _rate(people["with_two_or_more_initiatives"], people["with_portfolio"])

    return {
        "generated_at": iso(now()),
        "people": people,
        "plans": plans,
        "decisions": decisions,
        "budgets": budgets,
        "courses": courses,
        "over_time": over_time(session, months, today or now().date()),
    }


def over_time(session, months: int, today: date) -> dict:
    """Per calendar month (UTC), from the times of the events the gateway applied."""
    labels = _months_back(today.strftime("%Y-%m"), months)
    first, last = labels[0], labels[-1]
    series = {name: {m: 0 for m in labels} for name in SERIES}

    # when each person first appeared in each initiative: the running totals of people
    firsts = session.execute(select(change_log.c.subject, change_log.c.type, func.min(change_log.c.event_time))
                             .group_by(change_log.c.subject, change_log.c.type))
    joined: dict[str, dict[str, datetime]] = {}
    for subject, type_, at in firsts:
        service = SERVICE_OF_PREFIX.get(type_.split(".", 1)[0])
        if service is None:
            continue
        held = joined.setdefault(subject, {})
        at = _utc(at)
        if service not in held or at < held[service]:
            held[service] = at
    became = {"people": [], "people_two_or_more": []}
    for held in joined.values():
        times = sorted(held.values())
        became["people"].append(_month(times[0]))
        if len(times) >= 2:
            became["people_two_or_more"].append(_month(times[1]))
    for name, months_seen in became.items():
        per_month = Counter(months_seen)
        running = sum(n for m, n in per_month.items() if m < first)
        for m in labels:
            running += per_month.get(m, 0)
            series[name][m] = running

    # what happened in each month: agreements, recorded decisions, completions
    counted = {"plan.agreed": "plans_agreed_with_person", "decision.recorded": "decisions_recorded_with_priorities",
               "budget.agreed": "budgets_agreed", "group.completed": "courses_completed"}
    lower = datetime(int(first[:4]), int(first[5:7]), 1, tzinfo=timezone.utc)
    events = session.execute(select(change_log.c.type, change_log.c.event_time, change_log.c.body)
                             .where(change_log.c.type.in_(counted), change_log.c.event_time >= lower)
                             .execution_options(yield_per=500))
    for type_, at, body in events:
        month = _month(at)
        if month > last:
            continue
        if type_ in ("plan.agreed", "decision.recorded"):
            data = json.loads(body).get("data") or {}
            if type_ == "plan.agreed" and data.get("person_agreed") is not True:
                continue
            if type_ == "decision.recorded" and not data.get("priorities"):
                continue
        series[counted[type_]][month] += 1

    return {"months": labels, "series": {name: [values[m] for m in labels] for name, values in series.items()},
            "labels": dict(SERIES)}


# -- the JSON route ---------------------------------------------------------------------------------
bp = flask_smorest.Blueprint("reports", __name__, url_prefix="/v1/reports",
                             description="Site reports: counts only, no personal data")


class ReportQuery(ma.Schema):
    months = ma.fields.Integer(load_default=DEFAULT_MONTHS, validate=ma.validate.Range(min=1, max=MAX_MONTHS),
                               metadata={"description": "How many calendar months the over-time series cover"})


class ReportSchema(ma.Schema):
    generated_at = ma.fields.String()
    people = ma.fields.Dict(metadata={"description": "with_portfolio, with_two_or_more_initiatives, "
                                                     "two_or_more_rate, by_initiative_count, by_initiative"})
    plans = ma.fields.Dict(metadata={"description": "total, with_priorities, agreed, agreed_with_person, "
                                                    "with_priorities_and_agreed_with_person, by_status"})
    decisions = ma.fields.Dict(metadata={"description": "total, with_priorities, recorded, "
                                                        "recorded_with_priorities, recorded_with_persons_reason, "
                                                        "by_status"})
    budgets = ma.fields.Dict(metadata={"description": "total, live, live_annual_pence, currency, by_status"})
    courses = ma.fields.Dict(metadata={"description": "enrolments, in_progress, completed, not_completed, "
                                                      "withdrawn, finished, completion_rate, by_programme"})
    over_time = ma.fields.Dict(metadata={"description": "months (YYYY-MM), series {name: [count per month]}, "
                                                        "labels {name: what it counts}"})


def report(months: int = DEFAULT_MONTHS) -> dict:
    with ctx().db.session() as session:
        return compute(session, months)


@bp.route("/coproduction")
@bp.arguments(ReportQuery, location="query")
@bp.response(200, ReportSchema)
def coproduction_report(query):
    """The site's coproduction report (needs portfolio:read; admin includes it)."""
    return jsonify(report(query["months"]))
