"""The admission summary: what a hospital team needs on admission, from the gateway's own tables."""
from __future__ import annotations

import json
import uuid
from datetime import date, datetime, timedelta, timezone

import pytest

from bodies import AGREEMENT
from calls import if_match
from coproduction.events import iso, make_event
from coproduction.nhs_number import with_check_digit
from harness import wait_for
from oauth_client import bearer

NHS = with_check_digit("943476591")
TODAY = date.today()
SERVICES = ("plans", "decisions", "budgets", "groups")


@pytest.fixture
def platform(make_platform):
    p = make_platform(services=SERVICES).start()
    p.admit(NHS)  # the hospital declares his admission: its care relationship with him
    return p


def ok(r, *codes):
    assert r.status_code in (codes or (200, 201)), f"{r.request.method} {r.request.url}: {r.status_code} {r.text}"
    return r.json(), r.headers.get("ETag")


def summary(platform, role="hospital", nhs=NHS):
    return platform.call(role, "GET", f"/v1/people/{nhs}/admission-summary")


def summary_shows(platform, predicate, role="hospital"):
    def check():
        r = summary(platform, role)
        return r.json() if r.status_code == 200 and predicate(r.json()) else None
    return wait_for(check, timeout=20, interval=0.05, message="the admission summary")


def load_story(p) -> dict:
    """A plan, a budget with current and future support, a course in progress; returns the ids."""
    plan, _ = ok(p.call("gp", "POST", "/v1/plans", json={
        "nhs_number": NHS, "conditions": ["type 2 diabetes", "low mood"],
        "priorities": [{"text": "Keep driving for work", "category": "work_and_money", "rank": 1},
                       {"text": "Feel like myself again", "category": "mental_wellbeing", "rank": 2}],
        "goals": [{"description": "HbA1c under 58", "target": {"measure": "HbA1c", "value": 58,
                                                                "unit": "mmol/mol"}}],
        "next_review_date": (TODAY + timedelta(days=100)).isoformat(),
        "care_coordinator": "Practice nurse J Okafor"}))
    ok(p.call("gp", "POST", f"/v1/plans/{plan['id']}/agree", headers=if_match(1),
              json=AGREEMENT))
    doc = p.portfolio_shows(NHS, lambda d: d["plan"] and d["plan"]["status"] == "active")
    ids = {x["text"]: x["id"] for x in doc["priorities"]}
    mood = {"id": ids["Feel like myself again"], "text": "Feel like myself again", "category": "mental_wellbeing"}

    budget, etag = ok(p.call("social_care", "POST", "/v1/budgets", json={
        "nhs_number": NHS, "plan_id": plan["id"], "annual_pence": 800000,
        "holdings": [{"type": "direct_payment", "pence": 300000}, {"type": "notional", "pence": 500000,
                                                                  "managed_by": "Riverside ICB"}],
        "priorities": [mood],
        "line_items": [
            {"description": "Talking therapy", "category": "therapy", "sector": "voluntary", "pence": 5000,
             "frequency": "weekly", "priority_ids": [mood["id"]],
             "effective_from": (TODAY - timedelta(days=10)).isoformat()},
            {"description": "Personal assistant, 6 hours a week", "category": "personal_assistant",
             "sector": "private", "pence": 9000, "frequency": "weekly",
             "effective_from": (TODAY - timedelta(days=10)).isoformat()},
            {"description": "Gym from the spring", "category": "physical_activity", "sector": "private",
             "pence": 20000, "frequency": "annual", "effective_from": (TODAY + timedelta(days=60)).isoformat()}],
        "holder": {"relationship": "representative", "name": "Angela Brown", "contact": "07700 900123"},
        "care_coordinator": "Jo Smith, PHB lead"}))
    path = f"/v1/budgets/{budget['id']}"
    budget, etag = ok(p.call("social_care", "POST", path + "/start-planning", headers={"If-Match": etag}, json={}))
    budget, etag = ok(p.call("social_care", "POST", path + "/agree", headers={"If-Match": etag},
                             json={"agreed_by": "Jo Smith", "person_agreed": True}))
    budget, etag = ok(p.call("social_care", "POST", path + "/activate", headers={"If-Match": etag}, json={}))

    course, etag = ok(p.call("community", "POST", "/v1/courses", json={
        "programme": "expert_patients", "title": "Living well with diabetes", "sessions": 6,
        "starts_on": (TODAY - timedelta(days=14)).isoformat(), "capacity": 12,
        "tutors": [{"name": "Sam Lee", "role": "lay_tutor"}]}))
    ok(p.call("community", "POST", f"/v1/courses/{course['id']}/start", headers={"If-Match": etag}))
    enrolment, etag = ok(p.call("community", "POST", f"/v1/courses/{course['id']}/enrolments",
                                json={"nhs_number": NHS, "referral_source": "care_plan", "priorities": [mood]}))
    enrolment, etag = ok(p.call("community", "POST", f"/v1/enrolments/{enrolment['id']}/attendance",
                                headers={"If-Match": etag}, json={"session_no": 1, "attended": True}))
    ok(p.call("community", "POST", f"/v1/enrolments/{enrolment['id']}/action-plans", headers={"If-Match": etag},
              json={"week": 1, "what": "walk", "how_much": "15 minutes", "when": "after lunch",
                    "how_often": "5 days", "confidence": 8}))
    p.portfolio_shows(NHS, lambda d: d["budget"] and d["budget"]["status"] == "active" and d["groups"]
                      and d["groups"][0].get("action_plans"))
    return {"plan": plan["id"], "budget": budget["id"], "enrolment": enrolment["id"], "driving": ids["Keep driving for work"]}


def decision(driving_id: str) -> dict:
    return {"nhs_number": NHS, "setting": "inpatient", "encounter_id": "ADM-7",
            "question": "How should we manage his blood glucose?",
            "priorities": [{"id": driving_id, "text": "Keep driving for work", "category": "work_and_money"}],
            "options": [{"label": "Start insulin", "risks": [{"text": "hypo", "natural_frequency": "10 in 100"}]},
                        {"label": "Add a second tablet", "risks": [{"text": "thrush", "natural_frequency": "5 in 100"}]},
                        {"label": "No change until GP review", "is_no_change": True}]}


def without_clock(s: dict) -> dict:
    """The summary minus what moves with the clock (its own time, and the age of each part)."""
    s = json.loads(json.dumps(s))
    s.pop("generated_at")
    s["recent_changes"].pop("since")
    for part in s.values():
        if isinstance(part, dict):
            for fresh in (part.get("freshness") or {}).values():
                if isinstance(fresh, dict):
                    fresh.pop("age_seconds", None)
    return s


def test_admission_summary_follows_decisions_and_answers_with_every_service_stopped(platform):
    ids = load_story(platform)
    opened, etag = ok(platform.call("hospital", "POST", "/v1/decisions", json=decision(ids["driving"])))
    s = summary_shows(platform, lambda s: s["decisions"]["open"])
    assert [d["id"] for d in s["decisions"]["open"]] == [opened["id"]] and s["decisions"]["recent"] == []
    assert s["decisions"]["open"][0]["options"] == ["Start insulin", "Add a second tablet", "No change until GP review"]

    # the reused priority id: one item, held by the plan and the decision (and nothing else)
    [driving] = [p for p in s["priorities"]["items"] if p["id"] == ids["driving"]]
    assert {src["service"] for src in driving["sources"]} == {"plans", "decisions"}
    assert s["priorities"]["items"][0]["id"] == ids["driving"], "his own first priority comes first"

    chosen = opened["options"][1]
    ok(platform.call("hospital", "POST", f"/v1/decisions/{opened['id']}/record", headers={"If-Match": etag},
                     json={"chosen_option_id": chosen["id"], "persons_reason": "Worried about hypos while driving",
                           "clinician": "Dr R Mensah"}))
    deferred, etag = ok(platform.call("hospital", "POST", "/v1/decisions", json=dict(
        decision(ids["driving"]), question="Should he see liaison psychiatry on the ward?")))
    ok(platform.call("hospital", "POST", f"/v1/decisions/{deferred['id']}/defer", headers={"If-Match": etag},
                     json={"reason": "Wants to talk to his wife", "revisit_by": (TODAY + timedelta(days=2)).isoformat()}))

    s = summary_shows(platform, lambda s: s["decisions"]["recent"] and s["decisions"]["open"]
                      and s["decisions"]["open"][0]["status"] == "deferred")
    [recent] = s["decisions"]["recent"]
    assert recent["id"] == opened["id"] and recent["chosen_option"] == "Add a second tablet"
    assert recent["persons_reason"] == "Worried about hypos while driving" and recent["clinician"] == "Dr R Mensah"
    [still_open] = s["decisions"]["open"]
    assert still_open["id"] == deferred["id"] and still_open["revisit_by"] == (TODAY + timedelta(days=2)).isoformat()
    assert s["decisions"]["freshness"]["decisions"]["last_event_type"] == "decision.deferred"

    plan = s["plan"]["current"]
    assert plan["id"] == ids["plan"] and plan["conditions"] == ["type 2 diabetes", "low mood"]
    assert plan["goals"][0]["description"] == "HbA1c under 58"
    assert plan["care_coordinator"] == "Practice nurse J Okafor"
    assert {"role": "care coordinator", "name": "Practice nurse J Okafor"} in plan["contacts"]
    assert plan["next_review_date"] == (TODAY + timedelta(days=100)).isoformat()
    assert s["plan"]["freshness"]["plans"]["last_event_type"] == "plan.agreed"

    budget = s["budget"]["current"]
    assert budget["id"] == ids["budget"] and budget["status"] == "active"
    assert budget["holder"]["name"] == "Angela Brown" and budget["holder"]["relationship"] == "representative"
    assert [h["managed_by"] for h in budget["holder"]["holdings"]] == [None, "Riverside ICB"]
    affected = {a["description"]: a for a in s["budget"]["affected_support"]}
    assert set(affected) == {"Talking therapy", "Personal assistant, 6 hours a week"}, "not the future gym"
    assert "personal assistant" in affected["Personal assistant, 6 hours a week"]["on_admission"]
    assert s["budget"]["freshness"]["budgets"]["last_event_type"] == "budget.activated"

    [course] = s["courses"]["in_progress"]
    assert course["id"] == ids["enrolment"] and course["title"] == "Living well with diabetes"
    assert course["sessions_attended"] == 1 and course["latest_action_plan"]["what"] == "walk"
    assert s["courses"]["freshness"]["groups"]["last_event_type"] == "group.action-planned"

    changes = s["recent_changes"]["items"]
    assert changes[0]["type"] == "decision.deferred"
    assert any(c["type"] == "decision.recorded" and c["summary"].endswith("→ Add a second tablet") for c in changes)
    assert {c["service"] for c in changes} == set(SERVICES)
    for part in ("priorities", "decisions", "plan", "budget", "courses"):
        assert s[part]["withheld"] == [] and s[part]["freshness"], part
        for fresh in s[part]["freshness"].values():
            assert fresh["last_event_at"] and fresh["age_seconds"] >= 0

    # every domain service down: their web servers and relays stopped (and the consumer too)
    before = summary(platform).json()
    for name in SERVICES:
        platform.servers.pop(name).stop()
        platform.stop_thread(name + "-relay")
    platform.stop_thread("gateway-consumer")
    assert platform.call("gp", "GET", f"/v1/plans/{ids['plan']}").status_code == 503
    assert platform.call("hospital", "GET", f"/v1/decisions/{opened['id']}").status_code == 503
    r = summary(platform)
    assert r.status_code == 200, r.text
    assert without_clock(r.json()) == without_clock(before)
    assert r.json()["decisions"]["recent"][0]["chosen_option"] == "Add a second tablet"


def test_consent_window_and_access(platform):
    from sqlalchemy import select
    from gateway import clients, projection
    from gateway.models import change_log

    r = platform.call("gp", "POST", "/v1/plans", json={
        "nhs_number": NHS, "priorities": [{"text": "Keep driving for work", "category": "work_and_money"}]})
    plan = ok(r)[0]
    opened = ok(platform.call("hospital", "POST", "/v1/decisions", json=decision(
        platform.portfolio_shows(NHS, lambda d: d["plan"])["priorities"][0]["id"])))[0]
    s = summary_shows(platform, lambda s: s["decisions"]["open"])
    assert s["budget"] == {"current": None, "affected_support": [], "freshness": {"budgets": None}, "withheld": []}

    # an event older than 30 days is history, not a recent change
    old = make_event(source="plans", type="plan.created", subject=NHS, aggregate_id=str(uuid.uuid4()),
                     aggregate_version=1, data={"plan_id": "x", "status": "draft", "conditions": [], "priorities": [],
                                                "goals": [], "actions": [], "next_review_date": None,
                                                "changed_by": {}})
    long_ago = datetime.now(timezone.utc) - timedelta(days=40)
    old["time"] = iso(long_ago)
    db = platform.database("gateway")
    with db.session() as session:  # applied as the consumer would: kept beside the document, not shown
        projection.apply(session, old)
    with db.session() as session:
        assert session.execute(select(change_log.c.event_id).where(change_log.c.event_id == old["id"])).scalar()
    s = summary(platform).json()
    assert old["id"] not in json.dumps(s) and {c["ref"] for c in s["recent_changes"]["items"]} == {plan["id"], opened["id"]}

    # the person withholds decisions from hospitals: the part is empty and says so, everywhere
    ok(platform.call("admin", "PUT", f"/v1/people/{NHS}/sharing", json={"withhold": {"hospital": ["decisions"]}}))
    s = summary(platform).json()
    assert s["withheld"] == ["decisions"]
    assert s["decisions"] == {"open": [], "recent": [], "freshness": {}, "withheld": ["decisions"]}
    assert all(c["service"] != "decisions" for c in s["recent_changes"]["items"])
    assert all(src["service"] != "decisions" for p in s["priorities"]["items"] for src in p["sources"])
    assert "decisions" not in s["priorities"]["freshness"]
    assert summary(platform, role="gp").json()["decisions"]["open"][0]["id"] == opened["id"]

    # who may ask, and about whom
    assert platform.call(None, "GET", f"/v1/people/{NHS}/admission-summary").status_code == 401
    _id, token = clients.create(db, "no portfolio", "ORGX", "hospital", without=["portfolio:read"])
    r = platform.call(None, "GET", f"/v1/people/{NHS}/admission-summary", headers=bearer(token))
    assert r.status_code == 403
    assert summary(platform, nhs="9434765910").status_code == 422
    assert summary(platform, role="admin", nhs=with_check_digit("943476599") or "9434765870").status_code == 404
    log = ok(platform.call("admin", "GET", f"/v1/people/{NHS}/access-log"))[0]
    entries = log.get("items", log)
    assert any("admission-summary" in e["resource"] and e["outcome"] == "refused" for e in entries)
    assert any("admission-summary" in e["resource"] and e["outcome"] == "allowed" for e in entries)
    db.dispose()
