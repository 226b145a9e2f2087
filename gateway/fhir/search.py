"""Searches: ``Patient?identifier=``, ``CarePlan?patient=…`` and ``Goal?patient=…``.

Read from the gateway's projection, like the portfolio (one person's rows, by an index): a change
shows in a search once its event is applied, within the event delay, while a read (plan_reads.py)
asks the plans service and is current at once. The person is the one the access decision settled
from the search's one patient parameter (gateway/policy/), so a search never spans people. Results
are ordered by when each plan was created (then by id) and paged with ``_count`` and an opaque
``_cursor`` in the ``next`` link. A parameter this server does not offer is refused (400) unless
the client sends ``Prefer: handling=lenient``: ignoring a filter would answer with more than asked.
"""
from __future__ import annotations

import base64
import binascii
import json
from datetime import datetime, timedelta, timezone
from urllib.parse import urlencode

from flask import request
from sqlalchemy import select

from coproduction.http import Problem
from interop import fhir_plans
from interop.fhir_bundles import searchset

from .. import policy
from ..models import aggregates, portfolios
from ..security import request_session
from . import bp
from .export import plan_from_state
from .responses import base_url, count_param, fhir_json, timestamp

#: resource -> {search parameter: (type, what it matches)}: the CapabilityStatement lists these
PATIENT_PARAMS = {
    "patient": ("reference", "The person: Patient/<NHS number> (or the bare NHS number)"),
    "subject": ("reference", "The same as patient"),
    "subject:identifier": ("token", "The person's NHS number: https://fhir.nhs.uk/Id/nhs-number|<NHS number>"),
    "patient.identifier": ("token", "The same as subject:identifier"),
}
COMMON = {"_lastUpdated": ("date", "When the plan last changed: eq, ne, gt, lt, ge, le; repeat to AND"),
          "_count": ("number", "Page size, 1 to 100 (20)")}
SEARCH_PARAMS = {
    "Patient": {"identifier": ("token", "https://fhir.nhs.uk/Id/nhs-number|<NHS number>")},
    "CarePlan": {**PATIENT_PARAMS, "status": ("token", "CarePlan.status; a comma-separated list is an OR"), **COMMON},
    "Goal": {**PATIENT_PARAMS, "lifecycle-status": ("token", "Goal.lifecycleStatus; a comma-separated list is an OR"),
             **COMMON},
}
CONTROL = {"_cursor", "_format"}
PRECISION = {4: "year", 7: "month", 10: "day"}


def _refuse_unknown(resource: str) -> None:
    if "handling=lenient" in request.headers.get("Prefer", ""):
        return
    unknown = sorted(set(request.args) - set(SEARCH_PARAMS[resource]) - CONTROL)
    if unknown:
        raise Problem(400, "Bad Request", f"Not a search parameter of {resource} here: {', '.join(unknown)}.",
                      errors={name: [f"Not offered; the {resource} search parameters are "
                                     f"{', '.join(SEARCH_PARAMS[resource])}."] for name in unknown})


def _range(value: str) -> tuple[datetime, datetime]:
    """The instants a date parameter's value covers: a year, a month, a day, or a moment."""
    try:
        if len(value) in PRECISION:
            start = datetime.fromisoformat({4: value + "-01-01", 7: value + "-01", 10: value}[len(value)])
            start = start.replace(tzinfo=timezone.utc)
            if len(value) == 4:
                end = start.replace(year=start.year + 1)
            elif len(value) == 7:
                end = (start.replace(day=28) + timedelta(days=4)).replace(day=1)
            else:
                end = start + timedelta(days=1)
            return start, end
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
        if moment.tzinfo is None:
            raise ValueError("no time zone")
        return moment, moment + timedelta(seconds=1)
    except ValueError:
        raise Problem(400, "Bad Request", f"_lastUpdated: not a FHIR date or dateTime: {value!r}.",
                      errors={"_lastUpdated": ["A date (2027, 2027-02, 2027-02-01) or a dateTime with a zone, "
                                               "after one of eq, ne, gt, lt, ge, le."]}) from None


def _updated_tests() -> list:
    tests = []
    for raw in request.args.getlist("_lastUpdated"):
        prefix, value = (raw[:2], raw[2:]) if raw[:2] in ("eq", "ne", "gt", "lt", "ge", "le") else ("eq", raw)
        start, end = _range(value)
        tests.append({"eq": lambda t, s=start, e=end: s <= t < e, "ne": lambda t, s=start, e=end: not s <= t < e,
                      "gt": lambda t, e=end: t >= e, "ge": lambda t, s=start: t >= s,
                      "lt": lambda t, s=start: t < s, "le": lambda t, e=end: t < e}[prefix])
    return tests


def _codes(name: str, allowed) -> set[str] | None:
    values = request.args.getlist(name)
    if not values:
        return None
    codes = {c.strip() for v in values for c in v.split(",")}
    bad = sorted(codes - set(allowed))
    if bad:
        raise Problem(400, "Bad Request", f"{name}: not a code of this value set: {', '.join(bad)}.",
                      errors={name: [f"One of {', '.join(sorted(allowed))}."]})
    return codes


def _cursor() -> list | None:
    raw = request.args.get("_cursor")
    if raw is None:
        return None
    try:
        value = json.loads(base64.urlsafe_b64decode(raw + "=" * (-len(raw) % 4)))
        if isinstance(value, list) and all(isinstance(v, str) for v in value):
            return value
    except (ValueError, binascii.Error):
        pass
    raise Problem(400, "Bad Request", "_cursor: not a cursor this server gave out.",
                  errors={"_cursor": ["Follow the Bundle's next link as given."]})


def _page(resource: str, matches: list[tuple[list[str], dict]]) -> dict:
    """The page after the cursor, with a next link carrying every parameter the client gave."""
    count = count_param()
    after = _cursor()
    matches.sort(key=lambda m: m[0])
    ahead = [m for m in matches if after is None or m[0] > after]
    page = ahead[:count]
    params = [(k, v) for k, vs in request.args.lists() for v in vs if k != "_cursor"]
    self_url = f"{base_url()}/{resource}" + (f"?{urlencode(params)}" if params else "")
    next_url = None
    if len(ahead) > count:
        cursor = base64.urlsafe_b64encode(json.dumps(page[-1][0]).encode()).decode().rstrip("=")
        next_url = f"{base_url()}/{resource}?{urlencode(params + [('_cursor', cursor)])}"
    return searchset(base_url(), [r for _key, r in page], timestamp=timestamp(), self_url=self_url,
                     next_url=next_url, total=len(matches))


def _plans_of(nhs_number: str) -> list[dict]:
    rows = request_session().execute(select(aggregates).where(
        aggregates.c.nhs_number == nhs_number, aggregates.c.service == "plans")).mappings().all()
    return [plan_from_state(row) for row in rows]


def _updated_matches(tests, moment: str | None) -> bool:
    if not tests:
        return True
    if not moment:
        return False
    at = datetime.fromisoformat(moment.replace("Z", "+00:00"))
    return all(test(at) for test in tests)


@bp.get("/CarePlan")
def search_care_plans():
    _refuse_unknown("CarePlan")
    nhs = policy.current().subject
    statuses = _codes("status", set(fhir_plans.PLAN_STATUS.values()) | {"entered-in-error", "unknown"})
    tests = _updated_tests()
    matches = []
    for plan in _plans_of(nhs):
        resource = fhir_plans.care_plan(plan, fhir_plans.SERVER)
        if (statuses is None or resource["status"] in statuses) and _updated_matches(tests, plan.get("updated_at")):
            matches.append(([plan.get("created_at") or "", plan["id"]], resource))
    return fhir_json(_page("CarePlan", matches))


GOAL_LIFECYCLE = ("proposed", "planned", "accepted", "active", "on-hold", "completed", "cancelled",
                  "entered-in-error", "rejected")


@bp.get("/Goal")
def search_goals():
    _refuse_unknown("Goal")
    nhs = policy.current().subject
    statuses = _codes("lifecycle-status", GOAL_LIFECYCLE)
    tests = _updated_tests()
    matches = []
    for plan in _plans_of(nhs):
        if not _updated_matches(tests, plan.get("updated_at")):
            continue
        for goal in plan.get("goals") or []:
            resource = fhir_plans.goal(plan, goal, fhir_plans.SERVER)
            if statuses is None or resource["lifecycleStatus"] in statuses:
                matches.append(([plan.get("created_at") or "", plan["id"], resource["id"]], resource))
    return fhir_json(_page("Goal", matches))


def person_known(nhs_number: str) -> str | None:
    """When the person's record last changed, if the gateway holds one for them."""
    updated = request_session().execute(select(portfolios.c.updated_at)
                                        .where(portfolios.c.nhs_number == nhs_number)).scalar_one_or_none()
    return updated


@bp.get("/Patient")
def search_patients():
    _refuse_unknown("Patient")
    nhs = policy.current().subject
    updated = person_known(nhs)
    found = []
    if updated is not None:
        from .patients import patient_resource
        found.append(([nhs], patient_resource(nhs, updated)))
    return fhir_json(_page("Patient", found))
