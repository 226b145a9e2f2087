"""Care and support plans through the gateway, over RabbitMQ and PostgreSQL.

A plan's whole life (draft → active ⇄ on_hold → completed | revoked) with every revision kept as a
readable version, goals and actions moving through their own statuses, each event reaching the
portfolio and the change feed; illegal changes refused with the reason (409), stale or missing
If-Match refused (412/428), bad input refused naming every bad field (422) with nothing stored,
and Idempotency-Key making a retried create return the first plan.
"""
from __future__ import annotations

import uuid
from datetime import date, datetime, timedelta, timezone

import pytest

from bodies import AGREEMENT
from calls import if_match, race
from harness import wait_for
from nhs import new_nhs


@pytest.fixture(scope="module")
def platform(make_module_platform):
    return make_module_platform().start()


WALK = str(uuid.uuid4())
IN_A_YEAR = (date.today() + timedelta(days=365)).isoformat()


def plan_body(nhs: str, **overrides) -> dict:
    body = {
        "nhs_number": nhs,
        "conditions": ["type 2 diabetes", "low mood"],
        "priorities": [{"id": WALK, "text": "Walk my grandson to school", "category": "physical_activity",
                        "expressed_by": "person", "rank": 1, "status": "active"}],
        "goals": [{"description": "Weight 105 kg", "priority_ids": [WALK],
                   "target": {"measure": "body weight", "value": 105, "unit": "kg", "due": IN_A_YEAR}}],
        "actions": [{"text": "Walk 15 minutes after lunch", "owner": "person"},
                    {"text": "Refer to the Expert Patients Programme", "owner": "practice"}],
        "next_review_date": IN_A_YEAR,
        "results": [{"name": "HbA1c", "value": "58", "unit": "mmol/mol", "taken_on": date.today().isoformat()},
                    {"name": "Blood pressure", "value": "142/88", "unit": "mmHg"}],
        "results_shared_at": (datetime.now(timezone.utc) - timedelta(days=7)).isoformat(),
    }
    body.update(overrides)
    return body


def create(platform, nhs: str, role: str = "gp", headers=None, **overrides) -> dict:
    r = platform.call(role, "POST", "/v1/plans", json=plan_body(nhs, **overrides), headers=headers or {})
    assert r.status_code == 201, r.text
    assert r.headers["ETag"] == f'"{r.json()["version"]}"'
    return r.json()


def write(platform, method: str, path: str, version: int, body=None, expect: int = 200, role: str = "gp"):
    r = platform.call(role, method, path, headers=if_match(version), json=body if body is not None else {})
    assert r.status_code == expect, r.text
    return r.json()


def feed(platform, nhs: str) -> list[dict]:
    items, cursor = [], None
    while True:
        r = platform.call("gp", "GET", f"/v1/people/{nhs}/changes", params={"after": cursor} if cursor else {})
        assert r.status_code == 200, r.text
        items += r.json()["items"]
        cursor = r.json()["next_cursor"]
        if not r.json()["has_more"]:
            return items


def test_a_plan_lives_its_whole_life_through_the_gateway(platform):
    nhs = new_nhs()
    first_body = plan_body(nhs)
    r = platform.call("gp", "POST", "/v1/plans", json=first_body, headers={"Idempotency-Key": "whole-life-1"})
    assert r.status_code == 201 and r.headers["ETag"] == '"1"', r.text
    plan = first = r.json()
    pid = plan["id"]
    assert plan["status"] == "draft" and plan["version"] == 1
    assert plan["results"][0]["name"] == "HbA1c" and plan["results_shared_at"]
    assert plan["goals"][0]["lifecycle_status"] == "active" and plan["goals"][0]["status_date"]
    goal_id, walk_action, refer_action = plan["goals"][0]["id"], plan["actions"][0]["id"], plan["actions"][1]["id"]

    # a draft is edited in place: a new version, still a draft
    review = (date.today() + timedelta(days=180)).isoformat()
    plan = write(platform, "PATCH", f"/v1/plans/{pid}", 1, {"next_review_date": review, "reason": "Sooner review"})
    assert (plan["version"], plan["status"], plan["next_review_date"]) == (2, "draft", review)

    plan = write(platform, "POST", f"/v1/plans/{pid}/agree", 2, AGREEMENT)
    assert (plan["version"], plan["status"], plan["agreed_by"], plan["person_agreed"]) == (3, "active", "Dr A Patel", True)

    # a goal is achieved; an action is done
    plan = write(platform, "PATCH", f"/v1/plans/{pid}/goals/{goal_id}", 3,
                 {"achievement_status": "achieved", "lifecycle_status": "completed", "reason": "Weighed at 104 kg"})
    [goal] = plan["goals"]
    assert (goal["achievement_status"], goal["lifecycle_status"]) == ("achieved", "completed")
    assert goal["achieved_on"] == date.today().isoformat() and plan["version"] == 4
    plan = write(platform, "PATCH", f"/v1/plans/{pid}/actions/{walk_action}", 4, {"status": "done"})
    assert plan["actions"][0]["status"] == "done" and plan["actions"][0]["completed_on"]
    assert plan["actions"][1]["status"] == "to_do" and plan["actions"][1]["id"] == refer_action

    plan = write(platform, "POST", f"/v1/plans/{pid}/hold", 5, {"reason": "Admitted to hospital"})
    assert (plan["status"], plan["status_reason"], plan["version"]) == ("on_hold", "Admitted to hospital", 6)
    doc = platform.portfolio_shows(nhs, lambda d: d["plan"] and d["plan"]["status"] == "on_hold")
    assert doc["plan"]["status_reason"] == "Admitted to hospital"
    plan = write(platform, "POST", f"/v1/plans/{pid}/resume", 6, {"reason": "Home again"})
    assert (plan["status"], plan["status_reason"]) == ("active", "Home again")

    # an agreed plan is revised: a new version, still active, the agreement kept
    priorities = plan["priorities"] + [{"text": "Keep driving for work", "category": "work_and_money",
                                        "expressed_by": "person", "rank": 2}]
    plan = write(platform, "PATCH", f"/v1/plans/{pid}", 7, {"priorities": priorities, "reason": "Review"})
    assert plan["version"] == 8 and plan["status"] == "active" and plan["agreed_by"] == "Dr A Patel"
    assert [p["text"] for p in plan["priorities"]] == ["Walk my grandson to school", "Keep driving for work"]
    assert plan["priorities"][0]["recorded_at"] == priorities[0]["recorded_at"]  # kept, not restamped

    plan = write(platform, "POST", f"/v1/plans/{pid}/close", 8, {"reason": "Year of care complete"})
    assert (plan["status"], plan["version"]) == ("completed", 9) and plan["closed_at"]

    # completed is final
    for method, path, body in (("POST", f"/v1/plans/{pid}/hold", {"reason": "x"}),
                               ("POST", f"/v1/plans/{pid}/resume", {}),
                               ("PATCH", f"/v1/plans/{pid}", {"conditions": ["asthma"]}),
                               ("PATCH", f"/v1/plans/{pid}/actions/{refer_action}", {"status": "done"}),
                               ("POST", f"/v1/plans/{pid}/revoke", {"reason": "x"})):
        r = platform.call("gp", method, path, headers=if_match(9), json=body)
        assert r.status_code == 409, r.text
        assert "completed is final" in r.json()["detail"]

    # every version stays readable (by a hospital too, once it has declared his admission)
    platform.admit(nhs)
    r = platform.call("hospital", "GET", f"/v1/plans/{pid}/versions")
    assert r.status_code == 200, r.text
    versions = r.json()["items"]
    assert [v["event_type"] for v in versions] == [
        "plan.created", "plan.revised", "plan.agreed", "plan.revised", "plan.revised", "plan.held",
        "plan.resumed", "plan.revised", "plan.closed"]
    assert versions[1]["changes"] == ["next_review_date"] and versions[1]["reason"] == "Sooner review"
    assert versions[3]["changes"] == ["goals"] and versions[4]["changes"] == ["actions"]
    r = platform.call("hospital", "GET", f"/v1/plans/{pid}/versions/2")
    assert r.status_code == 200 and r.headers["ETag"] == '"2"'
    assert (r.json()["status"], r.json()["version"], r.json()["agreed_by"]) == ("draft", 2, None)
    assert r.json()["goals"][0]["achievement_status"] == "in-progress"
    assert platform.call("hospital", "GET", f"/v1/plans/{pid}/versions/10").status_code == 404
    for beyond in (2**31, 682773938547847040):  # past the column's range: no such version, not a 500
        assert platform.call("hospital", "GET", f"/v1/plans/{pid}/versions/{beyond}").status_code == 404
        assert platform.call("hospital", "GET", f"/v1/plans/{pid}/versions/{beyond}/fhir").status_code == 404

    # the portfolio follows, and the person's change feed has every event once, in order
    doc = platform.portfolio_shows(nhs, lambda d: d["plan"] and d["plan"]["status"] == "completed")
    assert doc["plan"]["version"] == 9 and doc["plan"]["closed_at"] == plan["closed_at"]
    assert {p["text"] for p in doc["priorities"]} | {p["text"] for p in doc["past_priorities"]} >= {
        "Walk my grandson to school", "Keep driving for work"}
    events = wait_for(lambda: (lambda e: e if len(e) == 9 else None)(feed(platform, nhs)),
                      message="nine plan events in the feed")
    assert [e["aggregateversion"] for e in events] == list(range(1, 10))
    assert [e["type"] for e in events] == [v["event_type"] for v in versions]
    assert events[-1]["data"]["status"] == "completed" and events[-1]["data"]["reason"] == "Year of care complete"
    assert all(e["data"]["goals"] and e["data"]["next_review_date"] and e["data"]["priorities"] for e in events)

    # a late retry of the very first POST answers with the first result, never a second plan
    r = platform.call("gp", "POST", "/v1/plans", json=first_body, headers={"Idempotency-Key": "whole-life-1"})
    assert r.status_code == 201 and r.json() == first and r.headers["Idempotent-Replayed"] == "true"
    assert len(platform.call("gp", "GET", "/v1/plans", params={"nhs_number": nhs}).json()["items"]) == 1


def test_illegal_transitions_are_refused_with_the_reason(platform):
    nhs = new_nhs()
    plan = create(platform, nhs)
    pid = plan["id"]
    r = platform.call("gp", "POST", f"/v1/plans/{pid}/hold", headers=if_match(1), json={"reason": "x"})
    assert r.status_code == 409
    assert r.json()["detail"] == ("A draft plan cannot be put on hold; a draft plan can only be agreed, "
                                  "revised, revoked.")
    r = platform.call("gp", "POST", f"/v1/plans/{pid}/close", headers=if_match(1), json={})
    assert r.status_code == 409 and "cannot be closed" in r.json()["detail"]

    empty = create(platform, nhs, priorities=[], goals=[])
    r = platform.call("gp", "POST", f"/v1/plans/{empty['id']}/agree", headers=if_match(1),
                      json=AGREEMENT)
    assert r.status_code == 409 and "priorities is empty" in r.json()["detail"]

    plan = write(platform, "POST", f"/v1/plans/{pid}/agree", 1, {"agreed_by": "Nurse B Jones", "person_agreed": True})
    r = platform.call("gp", "POST", f"/v1/plans/{pid}/agree", headers=if_match(2),
                      json=AGREEMENT)
    assert r.status_code == 409 and "An active plan cannot be agreed" in r.json()["detail"]
    r = platform.call("gp", "POST", f"/v1/plans/{pid}/resume", headers=if_match(2), json={})
    assert r.status_code == 409 and "cannot be resumed" in r.json()["detail"]

    # a goal's lifecycle follows FHIR's: a cancelled goal cannot come back
    goal_id = plan["goals"][0]["id"]
    plan = write(platform, "PATCH", f"/v1/plans/{pid}/goals/{goal_id}", 2, {"lifecycle_status": "cancelled"})
    r = platform.call("gp", "PATCH", f"/v1/plans/{pid}/goals/{goal_id}", headers=if_match(3),
                      json={"lifecycle_status": "active"})
    assert r.status_code == 409 and "is cancelled and cannot become active" in r.json()["detail"]
    r = platform.call("gp", "PATCH", f"/v1/plans/{pid}", headers=if_match(3),
                      json={"goals": [dict(plan["goals"][0], lifecycle_status="proposed")]})
    assert r.status_code == 409 and "cannot become proposed" in r.json()["detail"]

    # hold and revoke need a reason; revoke ends the plan (plan.closed, status revoked)
    r = platform.call("gp", "POST", f"/v1/plans/{pid}/revoke", headers=if_match(3), json={})
    assert r.status_code == 422 and list(r.json()["errors"]) == ["reason"]
    plan = write(platform, "POST", f"/v1/plans/{pid}/revoke", 3, {"reason": "Recorded for the wrong person"})
    assert plan["status"] == "revoked" and plan["closed_at"]
    r = platform.call("gp", "POST", f"/v1/plans/{pid}/resume", headers=if_match(4), json={})
    assert r.status_code == 409 and "revoked is final" in r.json()["detail"]
    versions = platform.call("gp", "GET", f"/v1/plans/{pid}/versions").json()["items"]
    assert versions[-1]["event_type"] == "plan.closed" and versions[-1]["status"] == "revoked"

    # nothing moved on any refusal
    r = platform.call("gp", "GET", f"/v1/plans/{pid}")
    assert r.json()["version"] == 4 and r.headers["ETag"] == '"4"'


def test_if_match_is_required_and_must_be_current(platform):
    plan = create(platform, new_nhs())
    pid = plan["id"]
    r = platform.call("gp", "PATCH", f"/v1/plans/{pid}", json={"conditions": ["asthma"]})
    assert r.status_code == 428
    for method, path, body in (("POST", "agree", AGREEMENT),
                               ("POST", "hold", {"reason": "x"}), ("POST", "close", {}),
                               ("PATCH", f"goals/{plan['goals'][0]['id']}", {"lifecycle_status": "on-hold"}),
                               ("PATCH", f"actions/{plan['actions'][0]['id']}", {"status": "done"})):
        r = platform.call("gp", method, f"/v1/plans/{pid}/{path}", json=body)
        assert r.status_code == 428, (path, r.text)
    r = platform.call("gp", "PATCH", f"/v1/plans/{pid}", headers=if_match(7), json={"conditions": ["asthma"]})
    assert r.status_code == 412 and r.headers["ETag"] == '"1"'
    # the same content again is no change: no new version
    r = platform.call("gp", "PATCH", f"/v1/plans/{pid}", headers=if_match(1),
                      json={"conditions": plan["conditions"]})
    assert r.status_code == 200 and r.json()["version"] == 1
    assert len(platform.call("gp", "GET", f"/v1/plans/{pid}/versions").json()["items"]) == 1


def test_bad_input_gets_a_422_naming_every_bad_field_and_nothing_is_stored(platform):
    nhs = new_nhs()
    yesterday = (date.today() - timedelta(days=1)).isoformat()
    r = platform.call("gp", "POST", "/v1/plans", json=plan_body(
        "9434765918",  # wrong check digit
        goals=[{"target": {"measure": "body weight", "value": 105, "unit": "kg"}},
               {"description": "HbA1c below 53", "lifecycle_status": "finished"}],
        actions=[{"text": "Walk", "owner": "person", "status": "sometimes"}],
        next_review_date=yesterday))
    assert r.status_code == 422, r.text
    problem = r.json()
    assert r.headers["Content-Type"] == "application/problem+json"
    assert set(problem["errors"]) == {"nhs_number", "goals.0.description", "goals.1.lifecycle_status",
                                      "actions.0.status", "next_review_date"}
    assert "before the plan" in problem["errors"]["next_review_date"][0]

    r = platform.call("gp", "POST", "/v1/plans", json=plan_body(
        nhs, status="active", results_shared_at=(datetime.now(timezone.utc) + timedelta(days=2)).isoformat(),
        goals=[{"description": "Weight 105 kg", "priority_ids": [str(uuid.uuid4())]}],
        priorities=[{"text": "Walk", "category": "walking"}]))
    assert r.status_code == 422, r.text
    assert set(r.json()["errors"]) == {"status", "results_shared_at", "priorities.0.category"}

    r = platform.call("gp", "POST", "/v1/plans", json=plan_body(
        nhs, goals=[{"description": "Weight 105 kg", "priority_ids": [str(uuid.uuid4())]},
                    {"description": "Due last year", "target": {"measure": "m", "due": "2020-01-01"}}]))
    assert r.status_code == 422, r.text
    assert set(r.json()["errors"]) == {"goals.1.target.due"}
    r = platform.call("gp", "POST", "/v1/plans", json=plan_body(
        nhs, goals=[{"description": "Weight 105 kg", "priority_ids": [str(uuid.uuid4())]}]))
    assert r.status_code == 422 and set(r.json()["errors"]) == {"goals.0.priority_ids"}

    # text must be readable back (FHIR strings): not blank, no control characters
    r = platform.call("gp", "POST", "/v1/plans", json=plan_body(
        nhs, conditions=["asthma", "low\x07mood"], priorities=[{"text": " \u00a0 ", "category": "other"}]))
    assert r.status_code == 422, r.text
    assert set(r.json()["errors"]) == {"conditions.1", "priorities.0.text"}

    r = platform.call("admin", "GET", "/v1/plans", params={"nhs_number": nhs})
    assert r.status_code == 200 and r.json()["items"] == []  # nothing stored on any refusal

    plan = create(platform, nhs)
    pid = plan["id"]
    for body, fields in (({"next_review_date": yesterday}, {"next_review_date"}),
                         ({"nhs_number": nhs}, {"nhs_number"}),
                         ({"reason": "nothing else"}, {"body"}),
                         ({"actions": [{"text": "", "owner": "neighbour"}]}, {"actions.0.text", "actions.0.owner"}),
                         ({"goals": [plan["goals"][0], plan["goals"][0]]}, {"goals.1.id"})):
        r = platform.call("gp", "PATCH", f"/v1/plans/{pid}", headers=if_match(1), json=body)
        assert r.status_code == 422, (body, r.text)
        assert set(r.json()["errors"]) == fields, r.json()
    r = platform.call("gp", "PATCH", f"/v1/plans/{pid}/goals/{plan['goals'][0]['id']}", headers=if_match(1),
                      json={"target": {"measure": "body weight", "due": yesterday}, "achievement_status": "done"})
    assert r.status_code == 422 and set(r.json()["errors"]) == {"achievement_status"}
    r = platform.call("gp", "PATCH", f"/v1/plans/{pid}/goals/{plan['goals'][0]['id']}", headers=if_match(1),
                      json={"target": {"measure": "body weight", "due": yesterday}})
    assert r.status_code == 422 and set(r.json()["errors"]) == {"target.due"}
    r = platform.call("gp", "PATCH", f"/v1/plans/{pid}/goals/{uuid.uuid4()}", headers=if_match(1),
                      json={"lifecycle_status": "on-hold"})
    assert r.status_code == 404
    assert platform.call("gp", "GET", f"/v1/plans/{pid}").json()["version"] == 1


def test_a_retried_create_returns_the_first_plan(platform):
    nhs = new_nhs()
    body = plan_body(nhs)
    first = platform.call("gp", "POST", "/v1/plans", json=body, headers={"Idempotency-Key": "k-1"})
    again = platform.call("gp", "POST", "/v1/plans", json=body, headers={"Idempotency-Key": "k-1"})
    assert first.status_code == again.status_code == 201
    assert again.json() == first.json() and again.headers["Idempotent-Replayed"] == "true"
    assert again.headers["ETag"] == '"1"'
    r = platform.call("gp", "POST", "/v1/plans", json=dict(body, conditions=["asthma"]),
                      headers={"Idempotency-Key": "k-1"})
    assert r.status_code == 422 and list(r.json()["errors"]) == ["Idempotency-Key"]

    # ten retries racing with one key: one plan
    results = race(10, lambda _i: platform.call("gp", "POST", "/v1/plans", json=body,
                                                headers={"Idempotency-Key": "k-race"}))
    assert {r.status_code for r in results} == {201}, [r.text for r in results if r.status_code != 201]
    assert len({r.json()["id"] for r in results}) == 1
    items = platform.call("gp", "GET", "/v1/plans", params={"nhs_number": nhs}).json()["items"]
    assert len(items) == 2  # k-1 and k-race
    # and only two plan.created events ever reach the feed
    wait_for(lambda: len(feed(platform, nhs)) == 2, message="two plan.created events")
    assert [e["type"] for e in feed(platform, nhs)] == ["plan.created", "plan.created"]


def test_a_persons_plans_are_listed_in_pages(platform):
    nhs = new_nhs()
    ids = [create(platform, nhs)["id"] for _ in range(3)]
    platform.admit(nhs)
    r = platform.call("hospital", "GET", "/v1/plans", params={"nhs_number": nhs, "limit": 2})
    assert r.status_code == 200 and [p["id"] for p in r.json()["items"]] == ids[:2]
    r2 = platform.call("hospital", "GET", "/v1/plans",
                       params={"nhs_number": nhs, "limit": 2, "cursor": r.json()["next_cursor"]})
    assert [p["id"] for p in r2.json()["items"]] == ids[2:] and r2.json()["next_cursor"] is None
    write(platform, "POST", f"/v1/plans/{ids[1]}/agree", 1, {"agreed_by": "Dr A Patel", "person_agreed": False})
    r = platform.call("hospital", "GET", "/v1/plans", params={"nhs_number": nhs, "status": "active"})
    assert [p["id"] for p in r.json()["items"]] == [ids[1]] and r.json()["items"][0]["person_agreed"] is False
    r = platform.call("hospital", "GET", "/v1/plans", params={"nhs_number": nhs, "cursor": "nonsense"})
    assert r.status_code == 422 and list(r.json()["errors"]) == ["cursor"]
    r = platform.call("hospital", "GET", "/v1/plans", params={"nhs_number": "1234567890"})
    assert r.status_code == 422 and list(r.json()["errors"]) == ["nhs_number"]
    # a role without plans:write cannot change a plan
    r = platform.call("hospital", "PATCH", f"/v1/plans/{ids[0]}", headers=if_match(1),
                      json={"conditions": ["asthma"]})
    assert r.status_code == 403
