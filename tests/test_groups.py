"""Self-management groups through the gateway, over RabbitMQ and PostgreSQL.

Courses, enrolments, attendance, weekly action plans, completion by the rule, withdrawal; each
change reaches the portfolio, and what the person said matters on a course merges with the same
priority from their care plan. Refusals (full course, a second place, a session that does not
exist, confidence 11) are clear 409/422s and store nothing.
"""
from __future__ import annotations


import pytest
from sqlalchemy import text
from sqlalchemy.exc import IntegrityError

from bodies import AGREEMENT, COURSE
from calls import expect, if_match, race
from harness import wait_for
from nhs import new_nhs
from services.groups.models import default_min_sessions, min_of_six_from_env


@pytest.fixture(scope="module")
def gp(make_module_platform):
    """One platform (plans and groups) for the module; every test uses its own people and courses."""
    return make_module_platform(services=("plans", "groups")).start()


def create_course(p, **overrides) -> dict:
    return expect(p.call("community", "POST", "/v1/courses", json=dict(COURSE, **overrides)), 201)


def start(p, course) -> dict:
    return expect(p.call("community", "POST", f"/v1/courses/{course['id']}/start",
                     headers=if_match(course["version"])))


def enrol(p, course, nhs, expected=201, **body):
    r = p.call("community", "POST", f"/v1/courses/{course['id']}/enrolments",
               json=dict({"nhs_number": nhs, "referral_source": "care_plan"}, **body))
    return expect(r, expected)


def act(p, enrolment, path, body=None, status=200, version=None):
    r = p.call("community", "POST", f"/v1/enrolments/{enrolment['id']}/{path}", json=body or {},
               headers=if_match(version or enrolment["version"]))
    return expect(r, status)


def attend(p, enrolment, session_no, attended=True):
    return act(p, enrolment, "attendance", {"session_no": session_no, "attended": attended})


def group_of(doc, enrolment_id):
    return next((g for g in doc["groups"] if g["id"] == enrolment_id), None)


def shows(p, nhs, enrolment_id, predicate):
    """Wait until the person's portfolio shows the enrolment in a state the predicate accepts."""
    def check(doc):
        g = group_of(doc, enrolment_id)
        return g is not None and predicate(g)
    return group_of(p.portfolio_shows(nhs, check), enrolment_id)


def outbox_rows(p) -> int:
    db = p.database("groups")
    try:
        with db.session() as session:
            return session.execute(text("SELECT count(*) FROM outbox")).scalar_one()
    finally:
        db.dispose()


# -- the rule --------------------------------------------------------------------------------------
def test_completion_rule_default_scales_from_four_of_six(monkeypatch):
    assert [default_min_sessions(n) for n in (1, 2, 3, 4, 6, 7, 8, 12)] == [1, 2, 2, 3, 4, 5, 6, 8]
    assert [default_min_sessions(n, 3) for n in (6, 8, 1)] == [3, 4, 1]
    monkeypatch.delenv("GROUPS_COMPLETION_MIN_SESSIONS", raising=False)
    assert min_of_six_from_env() == 4
    monkeypatch.setenv("GROUPS_COMPLETION_MIN_SESSIONS", "5")
    assert min_of_six_from_env() == 5
    for bad in ("7", "0", "four"):
        monkeypatch.setenv("GROUPS_COMPLETION_MIN_SESSIONS", bad)
        with pytest.raises(ValueError, match="GROUPS_COMPLETION_MIN_SESSIONS"):
            min_of_six_from_env()


# -- courses ---------------------------------------------------------------------------------------
def test_courses_are_created_once_validated_and_listed(gp):
    key = {"Idempotency-Key": "course-" + new_nhs()}
    r1 = gp.call("community", "POST", "/v1/courses", json=COURSE, headers=key)
    r2 = gp.call("community", "POST", "/v1/courses", json=COURSE, headers=key)
    c1, c2 = expect(r1, 201), expect(r2, 201)
    assert c1["id"] == c2["id"] and r2.headers.get("Idempotent-Replayed") == "true"
    assert r1.headers["ETag"] == '"1"'
    assert c1["status"] == "planned" and c1["completion_min_sessions"] == 4
    assert c1["completion_rule"] == "attend at least 4 of 6 sessions"
    assert c1["places_left"] == 12 and c1["session_dates"][:2] == ["2027-04-09", "2027-04-16"]

    cch = create_course(gp, programme="co_creating_health", sessions=8, title="Co-Creating Health: COPD",
                        tutors=[{"name": "Dr R Khan", "role": "clinician"}, {"name": "Jo Bell", "role": "lay_tutor"}])
    assert cch["completion_min_sessions"] == 6  # 4 of 6 scaled to 8, rounded up
    assert create_course(gp, completion_min_sessions=3)["completion_min_sessions"] == 3

    r = gp.call("community", "POST", "/v1/courses",
                json=dict(COURSE, completion_min_sessions=7, programme="yoga", tutors=[{"name": "X", "role": "chef"}]))
    assert r.status_code == 422 and r.headers["Content-Type"] == "application/problem+json"
    assert {"completion_min_sessions", "programme", "tutors.0.role"} <= set(r.json()["errors"]), r.json()
    assert gp.call("hospital", "POST", "/v1/courses", json=COURSE).status_code == 403
    assert expect(gp.call("hospital", "GET", f"/v1/courses/{cch['id']}"))["title"] == "Co-Creating Health: COPD"

    page = expect(gp.call("gp", "GET", "/v1/courses?programme=co_creating_health&limit=1"))
    assert [c["id"] for c in page["items"]] == [cch["id"]] and page["next_cursor"] is None
    first = expect(gp.call("gp", "GET", "/v1/courses?programme=expert_patients&limit=1"))
    second = expect(gp.call("gp", "GET", f"/v1/courses?programme=expert_patients&limit=1&cursor={first['next_cursor']}"))
    assert first["items"][0]["id"] != second["items"][0]["id"]
    assert gp.call("gp", "GET", "/v1/courses?cursor=nonsense").status_code == 422


# -- the journey -----------------------------------------------------------------------------------
def test_enrol_attend_plan_and_complete_by_the_rule_each_showing_in_the_portfolio(gp):
    nhs = new_nhs()
    plan = expect(gp.call("gp", "POST", "/v1/plans", json={
        "nhs_number": nhs, "conditions": ["type 2 diabetes"],
        "priorities": [{"text": "Walk my grandson to school", "category": "physical_activity", "rank": 1},
                       {"text": "Feel less lonely", "category": "social_connection", "rank": 2}]}), 201)
    expect(gp.call("gp", "POST", f"/v1/plans/{plan['id']}/agree", headers=if_match(1),
               json=AGREEMENT))
    walk_id = next(p["id"] for p in plan["priorities"] if p["text"].startswith("Walk"))
    lonely_id = next(p["id"] for p in plan["priorities"] if p["text"].startswith("Feel"))

    course = start(gp, create_course(gp))
    # one priority reuses the plan's id; the other says the same thing in other words, with no id
    e = enrol(gp, course, nhs, priorities=[
        {"id": walk_id, "text": "Walk my grandson to school", "category": "physical_activity"},
        {"text": "I want to feel less lonely", "category": "social_connection"}])
    assert e["status"] == "enrolled" and e["version"] == 1 and e["course"]["title"] == COURSE["title"]
    g = shows(gp, nhs, e["id"], lambda g: g["status"] == "enrolled")
    assert g["title"] == "Living well with diabetes" and g["programme"] == "expert_patients"
    assert g["in_progress"] is True and g["attendance"] == [] and g["referral_source"] == "care_plan"

    doc = gp.portfolio_shows(nhs, lambda d: all(len(p["initiatives"]) == 2 for p in d["priorities"]))
    by_id = {p["id"]: p for p in doc["priorities"]}
    assert set(by_id) == {walk_id, lonely_id}, doc["priorities"]  # merged: no third or fourth item
    for pid in (walk_id, lonely_id):
        assert by_id[pid]["initiatives"] == ["groups", "plans"]
        assert {s["ref"] for s in by_id[pid]["sources"] if s["service"] == "groups"} == {e["id"]}
    assert by_id[walk_id]["rank"] == 1  # the person's own order from the agreed plan still leads

    e = attend(gp, e, 1)
    assert e["status"] == "active" and e["sessions_attended"] == 1
    g = shows(gp, nhs, e["id"], lambda g: g["status"] == "active")
    assert g["attendance"][0]["session_no"] == 1 and g["attendance"][0]["attended"] is True

    e = act(gp, e, "action-plans", {"week": 1, "what": "walk", "how_much": "15 minutes", "when": "after lunch",
                                    "how_often": "5 days", "confidence": 8}, status=201)
    [ap] = e["action_plans"]
    assert ap["confidence"] == 8 and ap["result"] is None
    shows(gp, nhs, e["id"], lambda g: len(g["action_plans"]) == 1)
    e = attend(gp, e, 2)
    e = act(gp, e, f"action-plans/{ap['id']}/result", {"result": "Walked 4 days out of 5", "achieved": "partly"})
    g = shows(gp, nhs, e["id"], lambda g: g["action_plans"] and g["action_plans"][0]["achieved"] == "partly")
    assert g["action_plans"][0]["result"] == "Walked 4 days out of 5"

    e = attend(gp, e, 3, attended=False)
    e = attend(gp, e, 4)
    e = attend(gp, e, 5)
    assert e["sessions_attended"] == 4 and e["completion"]["met"] is True
    assert e["status"] == "active", "the rule is decided once the final session is on record"
    e = attend(gp, e, 6, attended=False)
    assert e["status"] == "completed" and e["completed_at"] and e["version"] == 10
    gp.admit(nhs)
    r = gp.call("hospital", "GET", f"/v1/enrolments/{e['id']}")
    assert expect(r)["status"] == "completed" and r.headers["ETag"] == '"10"'

    g = shows(gp, nhs, e["id"], lambda g: g["status"] == "completed")
    assert g["in_progress"] is False and g["sessions_attended"] == 4 and len(g["attendance"]) == 6
    assert g["version"] == 10
    doc = gp.portfolio_shows(nhs, lambda d: d["timeline"][0]["type"] == "group.completed")
    types = [t["type"] for t in doc["timeline"] if t["service"] == "groups"]
    assert types[0] == "group.completed" and types[-1] == "group.enrolled"
    assert {"group.attended", "group.action-planned"} <= set(types)
    assert doc["timeline"][0]["summary"] == "group completed: Living well with diabetes"
    assert all(len(p["initiatives"]) == 2 for p in doc["priorities"])

    # completed is final
    r = gp.call("community", "POST", f"/v1/enrolments/{e['id']}/withdraw", json={"reason": "x"},
                headers=if_match(10))
    assert r.status_code == 409 and "final" in r.json()["detail"]


def test_finishing_a_course_settles_every_open_enrolment_by_the_rule(gp):
    course = start(gp, create_course(gp, title="Managing pain", sessions=4))
    assert course["completion_min_sessions"] == 3
    done, short, referral = new_nhs(), new_nhs(), new_nhs()
    e_done, e_short = enrol(gp, course, done), enrol(gp, course, short)
    e_ref = enrol(gp, course, referral, status="referred", referral_source="gp")
    assert e_ref["status"] == "referred"
    for n in (1, 2, 3):
        e_done = attend(gp, e_done, n)
    e_short = attend(gp, e_short, 1)
    assert e_done["status"] == "active", "session 4 is not on record yet"

    course = expect(gp.call("community", "GET", f"/v1/courses/{course['id']}"))
    r = gp.call("community", "POST", f"/v1/courses/{course['id']}/finish", headers=if_match(1))
    assert r.status_code == 412
    finished = expect(gp.call("community", "POST", f"/v1/courses/{course['id']}/finish",
                          headers=if_match(course["version"])))
    assert finished["status"] == "finished"

    g = shows(gp, done, e_done["id"], lambda g: g["status"] == "completed")
    assert g["sessions_attended"] == 3 and g["completed_at"]
    g = shows(gp, short, e_short["id"], lambda g: g["status"] == "not_completed")
    assert g["sessions_attended"] == 1 and g["in_progress"] is False
    g = shows(gp, referral, e_ref["id"], lambda g: g["status"] == "withdrawn")
    assert "not taken up" in g["reason"]
    # a finished course takes no one
    r = gp.call("community", "POST", f"/v1/courses/{course['id']}/enrolments",
                json={"nhs_number": new_nhs(), "referral_source": "self"})
    assert r.status_code == 409 and "finished" in r.json()["detail"]


def test_withdrawal_shows_in_the_portfolio_and_frees_the_place(gp):
    nhs, other = new_nhs(), new_nhs()
    course = start(gp, create_course(gp, capacity=1, title="Living well with COPD"))
    e = enrol(gp, course, nhs, referral_source="hospital",
              priorities=[{"text": "Breathe easier on the stairs", "category": "managing_my_condition"}])
    e = attend(gp, e, 1)
    shows(gp, nhs, e["id"], lambda g: g["status"] == "active")
    assert gp.call("community", "POST", f"/v1/courses/{course['id']}/enrolments",
                   json={"nhs_number": other, "referral_source": "self"}).status_code == 409

    r = gp.call("community", "POST", f"/v1/enrolments/{e['id']}/withdraw", json={"reason": "x"})
    assert r.status_code == 428
    e = act(gp, e, "withdraw", {"reason": "Started a new job; the sessions clash"})
    assert e["status"] == "withdrawn" and e["withdrawn_by"] == "person"
    g = shows(gp, nhs, e["id"], lambda g: g["status"] == "withdrawn")
    assert g["reason"] == "Started a new job; the sessions clash" and g["in_progress"] is False
    assert g["attendance"][0]["attended"] is True
    doc = gp.portfolio_shows(nhs, lambda d: d["timeline"][0]["type"] == "group.withdrawn")
    assert doc["priorities"][0]["sources"][0]["service"] == "groups"

    for path, body in (("withdraw", {"reason": "again"}), ("attendance", {"session_no": 2, "attended": True})):
        r = gp.call("community", "POST", f"/v1/enrolments/{e['id']}/{path}", json=body,
                    headers=if_match(e["version"]))
        assert r.status_code == 409, r.text
    # the place is free again: someone else, or the same person later, can take it
    other_e = enrol(gp, course, other, referral_source="self")
    assert expect(gp.call("community", "GET", f"/v1/courses/{course['id']}"))["places_left"] == 0
    act(gp, other_e, "withdraw", {"reason": "Moved away"})
    again = enrol(gp, course, nhs, referral_source="self")
    assert again["id"] != e["id"] and again["status"] == "enrolled"


def test_a_referral_must_be_confirmed_before_attendance(gp):
    nhs = new_nhs()
    course = start(gp, create_course(gp))
    e = enrol(gp, course, nhs, status="referred", referral_source="budget")
    shows(gp, nhs, e["id"], lambda g: g["status"] == "referred" and g["in_progress"])
    r = gp.call("community", "POST", f"/v1/enrolments/{e['id']}/attendance", json={"session_no": 1, "attended": True},
                headers=if_match(1))
    assert r.status_code == 409 and "confirm" in r.json()["detail"]
    e = act(gp, e, "confirm")
    assert e["status"] == "enrolled" and e["version"] == 2
    shows(gp, nhs, e["id"], lambda g: g["status"] == "enrolled")


def test_cancelling_a_course_withdraws_its_people_with_the_reason(gp):
    nhs = new_nhs()
    course = create_course(gp)
    e = enrol(gp, course, nhs)
    r = gp.call("community", "POST", f"/v1/enrolments/{e['id']}/attendance", json={"session_no": 1, "attended": True},
                headers=if_match(1))
    assert r.status_code == 409 and "start it first" in r.json()["detail"]
    cancelled = expect(gp.call("community", "POST", f"/v1/courses/{course['id']}/cancel", json={"reason": "Tutor ill"},
                           headers=if_match(1)))
    assert cancelled["status"] == "cancelled" and cancelled["status_reason"] == "Tutor ill"
    g = shows(gp, nhs, e["id"], lambda g: g["status"] == "withdrawn")
    assert g["reason"] == "The course was cancelled: Tutor ill"


# -- refusals --------------------------------------------------------------------------------------
def test_refusals_are_clear_and_store_nothing(gp):
    a, b, c = new_nhs(), new_nhs(), new_nhs()
    course = start(gp, create_course(gp, capacity=2, title="Small group"))
    e = enrol(gp, course, a)
    enrol(gp, course, b)
    shows(gp, a, e["id"], lambda g: g["status"] == "enrolled")
    before = outbox_rows(gp)

    r = gp.call("community", "POST", f"/v1/courses/{course['id']}/enrolments",
                json={"nhs_number": c, "referral_source": "gp"})
    assert r.status_code == 409 and r.headers["Content-Type"] == "application/problem+json"
    assert "full" in r.json()["detail"] and "2 places" in r.json()["detail"]

    r = gp.call("community", "POST", f"/v1/courses/{course['id']}/enrolments",
                json={"nhs_number": a, "referral_source": "self"})
    assert r.status_code == 409 and "already enrolled" in r.json()["detail"] and e["id"] in r.json()["detail"]

    r = gp.call("community", "POST", f"/v1/enrolments/{e['id']}/attendance", json={"session_no": 7, "attended": True},
                headers=if_match(1))
    assert r.status_code == 422 and "session 7 does not exist" in r.json()["errors"]["session_no"][0]
    r = gp.call("community", "POST", f"/v1/enrolments/{e['id']}/attendance", json={"session_no": 0, "attended": True},
                headers=if_match(1))
    assert r.status_code == 422 and "session_no" in r.json()["errors"]

    plan = {"week": 1, "what": "walk", "how_much": "15 minutes", "when": "after lunch", "how_often": "5 days",
            "confidence": 11}
    r = gp.call("community", "POST", f"/v1/enrolments/{e['id']}/action-plans", json=plan, headers=if_match(1))
    assert r.status_code == 422 and list(r.json()["errors"]) == ["confidence"]
    r = gp.call("community", "POST", f"/v1/enrolments/{e['id']}/action-plans", json=dict(plan, confidence=5, week=7),
                headers=if_match(1))
    assert r.status_code == 422 and "week" in r.json()["errors"]
    r = gp.call("community", "POST", f"/v1/enrolments/{e['id']}/action-plans", json=dict(plan, confidence=5),
                headers=if_match(0))
    assert r.status_code == 412
    r = gp.call("community", "POST", f"/v1/enrolments/{e['id']}/attendance", json={"session_no": 1, "attended": True})
    assert r.status_code == 428
    r = gp.call("community", "POST", f"/v1/enrolments/{e['id']}/attendance",
                json={"session_no": 1, "attended": True, "mood": "good"}, headers=if_match(1))
    assert r.status_code == 422 and "mood" in r.json()["errors"]
    r = gp.call("community", "POST", f"/v1/courses/{course['id']}/enrolments",
                json={"nhs_number": "9434765918", "referral_source": "friend"})
    assert r.status_code == 422 and {"nhs_number", "referral_source"} <= set(r.json()["errors"])

    # nothing was stored: no event, no new version, no place taken, no enrolment for the refused person
    assert outbox_rows(gp) == before
    got = expect(gp.call("community", "GET", f"/v1/enrolments/{e['id']}"))
    assert got["version"] == 1 and got["attendance"] == [] and got["action_plans"] == []
    assert expect(gp.call("community", "GET", f"/v1/courses/{course['id']}"))["places_taken"] == 2
    assert expect(gp.call("admin", "GET", f"/v1/enrolments?nhs_number={c}"))["items"] == []
    assert len(expect(gp.call("community", "GET", f"/v1/enrolments?nhs_number={a}"))["items"]) == 1
    assert gp.call("community", "GET", "/v1/enrolments").status_code == 422


def test_capacity_and_one_place_per_person_hold_under_concurrency(gp):
    course = start(gp, create_course(gp, capacity=3, title="Race for places"))
    people = [new_nhs() for _ in range(10)]
    codes = race(10, lambda i: gp.call(
        "community", "POST", f"/v1/courses/{course['id']}/enrolments",
        json={"nhs_number": people[i], "referral_source": "self"}).status_code)
    assert sorted(codes) == [201] * 3 + [409] * 7, codes
    assert expect(gp.call("community", "GET", f"/v1/courses/{course['id']}"))["places_taken"] == 3

    same = new_nhs()
    course2 = start(gp, create_course(gp, title="Race for one person"))
    codes = race(6, lambda i: gp.call(
        "community", "POST", f"/v1/courses/{course2['id']}/enrolments",
        json={"nhs_number": same, "referral_source": "self"}).status_code)
    assert sorted(codes) == [201] + [409] * 5, codes
    assert len(expect(gp.call("community", "GET", f"/v1/enrolments?nhs_number={same}"))["items"]) == 1

    # retries of one request (same Idempotency-Key) racing each other all get the one enrolment
    retried = new_nhs()
    answers = race(4, lambda i: gp.call(
        "community", "POST", f"/v1/courses/{course2['id']}/enrolments", headers={"Idempotency-Key": "enrol-" + retried},
        json={"nhs_number": retried, "referral_source": "gp"}))
    assert [a.status_code for a in answers] == [201] * 4, [a.text for a in answers]
    assert len({a.json()["id"] for a in answers}) == 1
    assert sum(a.headers.get("Idempotent-Replayed") == "true" for a in answers) == 3

    # the database enforces it too, whatever the code path: a second live row is refused
    db = gp.database("groups")
    try:
        with pytest.raises(IntegrityError):
            with db.session() as session:
                session.execute(text(
                    "INSERT INTO enrolments (id, course_id, nhs_number, status, referral_source, priorities,"
                    " attendance, action_plans, version, created_by, created_at, updated_at)"
                    " SELECT gen_random_uuid()::text, course_id, nhs_number, 'enrolled', 'self', '[]', '[]', '[]',"
                    " 1, 'test', now(), now() FROM enrolments WHERE nhs_number = :nhs"), {"nhs": same})
    finally:
        db.dispose()
    wait_for(lambda: gp.call("admin", "GET", f"/v1/people/{same}/portfolio").status_code == 200,
             message="the single enrolment to reach the portfolio")
