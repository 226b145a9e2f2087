"""FHIR R4: every document we emit validates with fhir.resources, and a plan round-trips.

``GET /v1/plans/{id}/fhir`` (the plans service, through the gateway) and the person's
``GET /v1/people/{nhs}/fhir`` (the gateway's projection) are parsed with fhir.resources (R4B, the
R4 family it ships; CarePlan, Goal, Observation, Patient and Bundle are the same as in R4.0.1),
their coded elements are checked against FHIR's required value sets (fhir.resources checks
structure, not bindings), every reference resolves inside the Bundle, and the fields a GP system
needs are read back out and compared with the plan. A property test does the same for plans of
every shape.
"""
from __future__ import annotations

import uuid
from datetime import date, datetime, timedelta, timezone

import pytest
from fhir.resources.R4B.bundle import Bundle
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from calls import create_plan, if_match
from coproduction.events import EXPRESSED_BY, PRIORITY_CATEGORIES, PRIORITY_STATUSES, iso
from coproduction.nhs_number import with_check_digit
from harness import wait_for
from interop import fhir_plans as fhir
from nhs import new_nhs
from services.plans.schemas import (ACTION_OWNERS, ACTION_STATUSES, GOAL_ACHIEVEMENT, GOAL_LIFECYCLE,
                                    PLAN_STATUSES)

NHS_SYSTEM = "https://fhir.nhs.uk/Id/nhs-number"
# FHIR R4 required bindings (fhir.resources validates structure, not codes)
CAREPLAN_STATUS = {"draft", "active", "on-hold", "revoked", "completed", "entered-in-error", "unknown"}
CAREPLAN_INTENT = {"proposal", "plan", "order", "option"}
ACTIVITY_STATUS = {"not-started", "scheduled", "in-progress", "on-hold", "completed", "cancelled", "stopped",
                   "unknown", "entered-in-error"}
GOAL_LIFECYCLE_CODES = {"proposed", "planned", "accepted", "active", "on-hold", "completed", "cancelled",
                        "entered-in-error", "rejected"}
OBSERVATION_STATUS = {"registered", "preliminary", "final", "amended", "corrected", "cancelled",
                      "entered-in-error", "unknown"}
ISSUE_SEVERITY = {"fatal", "error", "warning", "information"}
BUNDLE_TYPE = {"document", "message", "transaction", "transaction-response", "batch", "batch-response",
               "history", "searchset", "collection"}


# -- checking a document ---------------------------------------------------------------------------
def validate(document: dict) -> dict:
    """Parse with fhir.resources, check the bindings and references; return {resourceType: [resources]}."""
    Bundle.model_validate(document)  # raises on anything structurally wrong
    assert document["type"] in BUNDLE_TYPE
    full_urls = [e["fullUrl"] for e in document["entry"]]
    assert len(full_urls) == len(set(full_urls)), "fullUrl must be unique in a Bundle"
    by_type: dict[str, list] = {}
    for e in document["entry"]:
        r = e["resource"]
        by_type.setdefault(r["resourceType"], []).append(r)
        assert e["fullUrl"] == f"urn:uuid:{r['id']}"
        for reference in _references(r):
            if reference.startswith("urn:uuid:"):
                assert reference in full_urls, f"{reference} does not resolve in the Bundle"
    for cp in by_type.get("CarePlan", []):
        assert cp["status"] in CAREPLAN_STATUS and cp["intent"] in CAREPLAN_INTENT
        for a in cp.get("activity", []):
            assert a["detail"]["status"] in ACTIVITY_STATUS
    for g in by_type.get("Goal", []):
        assert g["lifecycleStatus"] in GOAL_LIFECYCLE_CODES
        assert g["achievementStatus"]["coding"][0]["code"] in GOAL_ACHIEVEMENT
    for o in by_type.get("Observation", []):
        assert o["status"] in OBSERVATION_STATUS
    for o in by_type.get("OperationOutcome", []):
        assert all(i["severity"] in ISSUE_SEVERITY for i in o["issue"])
    [patient] = by_type["Patient"]
    assert patient["identifier"][0]["system"] == NHS_SYSTEM
    return by_type


def _references(value):
    if isinstance(value, dict):
        for k, v in value.items():
            if k == "reference":
                yield v
            else:
                yield from _references(v)
    elif isinstance(value, list):
        for v in value:
            yield from _references(v)


# -- reading a plan back out of FHIR (what a GP system would do) -----------------------------------
def _ext(resource: dict, name: str) -> list[dict]:
    return [e for e in resource.get("extension", []) if e["url"] == fhir.EXT + name]


def _parts(ext: dict) -> dict:
    return {p["url"]: next(v for k, v in p.items() if k.startswith("value")) for p in ext["extension"]}


def _uuid(identifier: list[dict]) -> str:
    return identifier[0]["value"].removeprefix("urn:uuid:")


STATUS_BACK = {v: k for k, v in fhir.PLAN_STATUS.items()}
ACTION_BACK = {v: k for k, v in fhir.ACTION_STATUS.items()}


def plans_from_fhir(document: dict) -> list[dict]:
    by_type = validate(document)
    resources = {f"urn:uuid:{r['id']}": r for rs in by_type.values() for r in rs}
    [patient] = by_type["Patient"]
    nhs = patient["identifier"][0]["value"]
    out = []
    for cp in by_type.get("CarePlan", []):
        assert resources[cp["subject"]["reference"]] is patient
        agreement = _parts(_ext(cp, "agreement")[0]) if _ext(cp, "agreement") else {}
        review = _ext(cp, "next-review-date")
        shared = _ext(cp, "results-shared-at")
        goals = []
        for ref in cp.get("goal", []):
            g = resources[ref["reference"]]
            target = (g.get("target") or [None])[0]
            goals.append({
                "id": _uuid(g["identifier"]), "description": g["description"]["text"],
                "lifecycle_status": g["lifecycleStatus"],
                "achievement_status": g["achievementStatus"]["coding"][0]["code"],
                "target": None if target is None else {
                    "measure": target["measure"]["text"],
                    "value": target.get("detailQuantity", {}).get("value"),
                    "unit": target.get("detailQuantity", {}).get("unit") or target.get("detailString"),
                    "due": target.get("dueDate")},
                "priority_ids": [e["valueString"] for e in _ext(g, "serves-priority")],
                "status_date": g.get("statusDate")})
        results = []
        for ref in cp.get("supportingInfo", []):
            o = resources[ref["reference"]]
            quantity = o.get("valueQuantity")
            results.append({"id": _uuid(o["identifier"]), "name": o["code"]["text"],
                            "value": str(quantity["value"]) if quantity else o["valueString"],
                            "unit": quantity.get("unit") if quantity else None,
                            "taken_on": o.get("effectiveDateTime")})
        priorities = []
        for e in _ext(cp, "what-matters"):
            p = _parts(e)
            priorities.append({"id": p["id"], "text": p["text"], "category": p["category"],
                               "expressed_by": p["expressedBy"], "rank": p.get("rank"), "status": p["status"],
                               "recorded_at": p.get("recordedAt")})
        out.append({
            "id": cp["id"], "version": int(cp["meta"]["versionId"]), "nhs_number": nhs,
            "status": STATUS_BACK[cp["status"]],
            "conditions": [a["display"] for a in cp.get("addresses", [])],
            "priorities": priorities, "goals": goals,
            "actions": [{"id": a["id"], "text": a["detail"]["description"],
                         "owner": _ext(a["detail"], "action-owner")[0]["valueCode"],
                         "due": a["detail"].get("scheduledPeriod", {}).get("end"),
                         "status": ACTION_BACK[a["detail"]["status"]]} for a in cp.get("activity", [])],
            "results": results,
            "next_review_date": review[0]["valueDate"] if review else None,
            "results_shared_at": shared[0]["valueDateTime"] if shared else None,
            "agreed_by": agreement.get("agreedBy"), "person_agreed": agreement.get("personAgreed"),
            "agreed_at": agreement.get("agreedAt"),
            "created_at": cp.get("created"),
        })
    return out


def gp_fields(plan: dict) -> dict:
    """The fields a GP system needs, as our API has them, in the shape plans_from_fhir reads."""
    def result_value(r):
        number = fhir._number(r["value"])
        if number is None:
            return r["value"] + (f" {r['unit']}" if r.get("unit") else ""), None
        return str(number), r.get("unit")

    return {
        "id": plan["id"], "version": plan["version"], "nhs_number": plan["nhs_number"], "status": plan["status"],
        "conditions": plan["conditions"],
        "priorities": [{k: p.get(k) for k in ("id", "text", "category", "expressed_by", "rank", "status",
                                               "recorded_at")} for p in plan["priorities"]],
        "goals": [{"id": g["id"], "description": g["description"], "lifecycle_status": g["lifecycle_status"],
                   "achievement_status": g["achievement_status"],
                   "target": None if not g.get("target") else {
                       "measure": g["target"]["measure"], "value": g["target"].get("value"),
                       "unit": g["target"].get("unit"), "due": g["target"].get("due")},
                   "priority_ids": g.get("priority_ids") or [], "status_date": g.get("status_date")}
                  for g in plan["goals"]],
        "actions": [{k: a.get(k) for k in ("id", "text", "owner", "due", "status")} for a in plan["actions"]],
        "results": [{"id": r["id"], "name": r["name"], "value": result_value(r)[0], "unit": result_value(r)[1],
                     "taken_on": r.get("taken_on")} for r in plan.get("results", [])],
        "next_review_date": plan["next_review_date"], "results_shared_at": plan.get("results_shared_at"),
        "agreed_by": plan.get("agreed_by"), "person_agreed": plan.get("person_agreed"),
        "agreed_at": plan.get("agreed_at"), "created_at": plan.get("created_at"),
    }


# -- every shape of plan: the mapping alone -------------------------------------------------------
_text = st.text(st.characters(blacklist_categories=("Cs", "Cc", "Zl", "Zp")), min_size=1, max_size=30).filter(
    lambda s: s.strip())
_day = st.dates(date(2020, 1, 1), date(2035, 12, 31)).map(date.isoformat)
_moment = st.datetimes(datetime(2020, 1, 1), datetime(2035, 1, 1), timezones=st.just(timezone.utc)).map(iso)
_id = st.uuids(version=4).map(str)
_nhs = st.integers(100000000, 999999999).map(lambda n: with_check_digit(str(n))).filter(bool)


@st.composite
def plans(draw) -> dict:
    priorities = draw(st.lists(st.fixed_dictionaries({
        "id": _id, "text": _text, "category": st.sampled_from(PRIORITY_CATEGORIES),
        "expressed_by": st.sampled_from(EXPRESSED_BY), "rank": st.none() | st.integers(1, 100),
        "status": st.sampled_from(PRIORITY_STATUSES), "recorded_at": _moment}), max_size=4,
        unique_by=lambda p: p["id"]))
    priority_ids = [p["id"] for p in priorities]
    goals = draw(st.lists(st.fixed_dictionaries({
        "id": _id, "description": _text,
        "target": st.none() | st.fixed_dictionaries({
            "measure": _text, "value": st.none() | st.floats(-1e6, 1e6, allow_nan=False) | st.integers(-1000, 1000),
            "unit": st.none() | _text, "due": st.none() | _day}),
        "lifecycle_status": st.sampled_from(GOAL_LIFECYCLE), "achievement_status": st.sampled_from(GOAL_ACHIEVEMENT),
        "priority_ids": st.lists(st.sampled_from(priority_ids), unique=True) if priority_ids else st.just([]),
        "status_date": st.none() | _day}), max_size=4, unique_by=lambda g: g["id"]))
    actions = draw(st.lists(st.fixed_dictionaries({
        "id": _id, "text": _text, "owner": st.sampled_from(ACTION_OWNERS), "due": st.none() | _day,
        "status": st.sampled_from(ACTION_STATUSES)}), max_size=4, unique_by=lambda a: a["id"]))
    results = draw(st.lists(st.fixed_dictionaries({
        "id": _id, "name": _text,
        "value": _text | st.integers(0, 500).map(str) | st.decimals(0, 200, places=1).map(str),
        "unit": st.none() | _text, "taken_on": st.none() | _day}), max_size=3, unique_by=lambda r: r["id"]))
    agreed = draw(st.booleans())
    return {
        "id": draw(_id), "version": draw(st.integers(1, 500)), "status": draw(st.sampled_from(PLAN_STATUSES)),
        "status_reason": draw(st.none() | _text), "nhs_number": draw(_nhs),
        "conditions": draw(st.lists(_text, max_size=3)), "priorities": priorities, "goals": goals,
        "actions": actions, "results": results, "next_review_date": draw(st.none() | _day),
        "results_shared_at": draw(st.none() | _moment), "care_coordinator": draw(st.none() | _text),
        "agreed_by": draw(_text) if agreed else None, "person_agreed": draw(st.booleans()) if agreed else None,
        "agreed_at": draw(_moment) if agreed else None, "closed_at": draw(st.none() | _moment),
        "created_at": draw(_moment), "updated_at": draw(_moment),
    }


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(plans())
def test_every_plan_maps_to_valid_fhir_that_reads_back_the_same(plan):
    document = fhir.plan_bundle(plan, iso(datetime.now(timezone.utc)))
    [back] = plans_from_fhir(document)
    assert back == gp_fields(plan)


# -- through the platform -------------------------------------------------------------------------
@pytest.fixture(scope="module")
def platform(make_module_platform):
    return make_module_platform().start()


IN_A_YEAR = (date.today() + timedelta(days=365)).isoformat()


def make_plan(platform, nhs: str, agree: bool = True) -> dict:
    walk = str(uuid.uuid4())
    return create_plan(platform, {
        "nhs_number": nhs, "conditions": ["type 2 diabetes", "low mood"],
        "priorities": [{"id": walk, "text": "Walk my grandson to school", "category": "physical_activity",
                        "rank": 1}],
        "goals": [{"description": "Weight 105 kg", "priority_ids": [walk],
                   "target": {"measure": "body weight", "value": 105, "unit": "kg", "due": IN_A_YEAR}},
                  {"description": "Feel less low", "lifecycle_status": "proposed"}],
        "actions": [{"text": "Walk 15 minutes after lunch", "owner": "person", "due": IN_A_YEAR},
                    {"text": "Book a review of medicines", "owner": "practice", "status": "in_progress"},
                    {"text": "Join the walking group", "owner": "community"}],
        "next_review_date": IN_A_YEAR,
        "results": [{"name": "HbA1c", "value": "58", "unit": "mmol/mol", "taken_on": date.today().isoformat()},
                    {"name": "Blood pressure", "value": "142/88", "unit": "mmHg"}],
        "results_shared_at": iso(datetime.now(timezone.utc) - timedelta(days=7)),
    }, agreed=agree)


def test_a_plans_fhir_validates_and_round_trips(platform):
    nhs = new_nhs()
    plan = make_plan(platform, nhs)
    platform.admit(nhs)
    r = platform.call("hospital", "GET", f"/v1/plans/{plan['id']}/fhir")
    assert r.status_code == 200, r.text
    assert r.headers["Content-Type"].startswith("application/fhir+json") and r.headers["ETag"] == '"2"'
    by_type = validate(r.json())
    assert [len(by_type[t]) for t in ("Patient", "CarePlan", "Goal", "Observation")] == [1, 1, 2, 2]
    assert by_type["Patient"][0]["identifier"] == [{"system": NHS_SYSTEM, "value": nhs}]
    [back] = plans_from_fhir(r.json())
    assert back == gp_fields(plan)
    assert back["status"] == "active" and back["person_agreed"] is True and back["agreed_by"] == "Dr A Patel"

    # an older version reads as it was
    r = platform.call("hospital", "GET", f"/v1/plans/{plan['id']}/versions/1/fhir")
    assert r.status_code == 200, r.text
    [v1] = plans_from_fhir(r.json())
    assert (v1["status"], v1["version"], v1["agreed_by"]) == ("draft", 1, None)

    # reading the FHIR through the gateway is audited against the person
    r = platform.call("admin", "GET", "/v1/audit", params={"nhs_number": nhs, "limit": 1000})
    assert any(f"/v1/plans/{plan['id']}/fhir" in a["resource"] and a["outcome"] == "allowed"
               for a in r.json()["items"]), r.json()


def test_the_persons_bundle_validates_and_holds_every_plan(platform):
    nhs = new_nhs()
    first = make_plan(platform, nhs)
    r = platform.call("gp", "POST", f"/v1/plans/{first['id']}/close", headers=if_match(2),
                      json={"reason": "Replaced at annual review"})
    assert r.status_code == 200, r.text
    first = r.json()
    second = make_plan(platform, nhs, agree=False)

    def bundle():
        r = platform.call("gp", "GET", f"/v1/people/{nhs}/fhir")
        if r.status_code != 200:
            return None
        got = {p["id"]: p for p in plans_from_fhir(r.json())}
        return r if got.get(first["id"], {}).get("version") == 3 and second["id"] in got else None

    r = wait_for(bundle, message="both plans in the person's FHIR Bundle")
    assert r.headers["Content-Type"].startswith("application/fhir+json")
    by_type = validate(r.json())
    assert by_type["Patient"][0]["identifier"] == [{"system": NHS_SYSTEM, "value": nhs}]
    assert len(by_type["CarePlan"]) == 2 and len(by_type["Goal"]) == 4
    got = {p["id"]: p for p in plans_from_fhir(r.json())}
    # the gateway's projection reads the same as the plans service's own plan
    for plan in (first, second):
        assert got[plan["id"]] == gp_fields(plan)
    closed = next(cp for cp in by_type["CarePlan"] if cp["id"] == first["id"])
    assert closed["status"] == "completed" and closed["period"]["end"] == first["closed_at"]

    # the bundle read is audited
    r = platform.call("admin", "GET", "/v1/audit", params={"nhs_number": nhs, "limit": 1000})
    assert any(a["resource"].startswith(f"/v1/people/{nhs}/fhir") for a in r.json()["items"])


def test_withheld_plans_are_left_out_and_said_so(platform):
    nhs = new_nhs()
    plan = make_plan(platform, nhs)
    platform.portfolio_shows(nhs, lambda d: d["plan"] and d["plan"]["version"] == 2)
    r = platform.call("admin", "PUT", f"/v1/people/{nhs}/sharing", json={"withhold": {"hospital": ["plans"]}})
    assert r.status_code == 200, r.text
    platform.admit(nhs)
    r = platform.call("hospital", "GET", f"/v1/people/{nhs}/fhir")
    assert r.status_code == 200, r.text
    by_type = validate(r.json())
    assert "CarePlan" not in by_type and "Goal" not in by_type
    assert by_type["OperationOutcome"][0]["issue"][0]["code"] == "suppressed"
    # the plan's own FHIR is refused to that role through the gateway, as its JSON is
    r = platform.call("hospital", "GET", f"/v1/plans/{plan['id']}/fhir")
    assert r.status_code == 403, r.text
    assert platform.call("gp", "GET", f"/v1/people/{nhs}/fhir").json()["entry"][1]["resource"]["resourceType"] \
        == "CarePlan"


def test_bad_requests_for_a_bundle(platform):
    r = platform.call("gp", "GET", "/v1/people/1234567890/fhir")
    assert r.status_code == 422 and list(r.json()["errors"]) == ["nhs_number"]
    r = platform.call("admin", "GET", f"/v1/people/{new_nhs()}/fhir")
    assert r.status_code == 404  # nobody's record yet (a GP without a relationship: 403)
    r = platform.call("gp", "GET", f"/v1/plans/{uuid.uuid4()}/fhir")
    assert r.status_code == 404
    r = platform.call(None, "GET", f"/v1/people/{new_nhs()}/fhir")
    assert r.status_code == 401
