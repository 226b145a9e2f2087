"""Personal health budgets through the gateway, over RabbitMQ and PostgreSQL.

A budget's whole life (requested → planning → agreed → active ⇄ under_review → suspended → ended),
what each change says, the budget in the portfolio with its priorities merged with the plan's,
and the rules that refuse a budget (excluded categories, holdings that don't add up, no plan)
with nothing stored.
"""
from __future__ import annotations

import uuid

import pytest
from sqlalchemy import func, select

from bodies import gym_budget, plan_body, priority
from calls import create_plan, if_match
from nhs import new_nhs


@pytest.fixture(scope="module")
def platform(make_module_platform):
    return make_module_platform(services=("plans", "budgets")).start()


WALK = str(uuid.uuid4())


def make_plan(platform, nhs: str) -> dict:
    return create_plan(platform, plan_body(nhs, priority(id=WALK, expressed_by="person", rank=1),
                                           conditions=["type 2 diabetes"]))


def budget_body(nhs: str, plan_id: str, **overrides) -> dict:
    return gym_budget(nhs, plan_id, WALK, priority("Lose enough weight to play football again", "weight_and_diet",
                                                   expressed_by="person"), **overrides)


def write(platform, method: str, path: str, version: int, **kwargs):
    return platform.call("social_care", method, path, headers=if_match(version), **kwargs)


def test_a_budget_lives_its_whole_life_and_every_change_says_what_changed(platform):
    nhs = new_nhs()
    plan = make_plan(platform, nhs)

    assert platform.call("gp", "POST", "/v1/budgets", json=budget_body(nhs, plan["id"])).status_code == 403
    r = platform.call("social_care", "POST", "/v1/budgets", json=budget_body(nhs, plan["id"]))
    assert r.status_code == 201, r.text
    budget = r.json()
    bid = budget["id"]
    assert r.headers["ETag"] == '"1"' and r.headers["Location"] == f"/v1/budgets/{bid}"
    assert budget["status"] == "requested" and budget["version"] == 1 and budget["plan_id"] == plan["id"]
    assert budget["currency"] == "GBP" and budget["allocated_pence"] == 30000
    assert budget["unallocated_pence"] == 84000
    gym = budget["line_items"][0]
    assert uuid.UUID(gym["id"]) and gym["annual_pence"] == 30000
    assert all(uuid.UUID(p["id"]) and p["recorded_at"] for p in budget["priorities"])
    assert platform.call("gp", "GET", f"/v1/budgets/{bid}").json()["id"] == bid  # gp reads

    # illegal transitions say why; If-Match is required and must be current
    r = write(platform, "POST", f"/v1/budgets/{bid}/agree", 1,
              json={"agreed_by": "Jo Smith", "person_agreed": True})
    assert r.status_code == 409 and "start planning" in r.json()["detail"], r.text
    r = platform.call("social_care", "POST", f"/v1/budgets/{bid}/start-planning", json={})
    assert r.status_code == 428
    r = write(platform, "POST", f"/v1/budgets/{bid}/start-planning", 1, json={"care_coordinator": "Jo Smith"})
    assert r.status_code == 200 and r.json()["status"] == "planning" and r.headers["ETag"] == '"2"', r.text
    r = write(platform, "POST", f"/v1/budgets/{bid}/agree", 1, json={"agreed_by": "Jo Smith", "person_agreed": True})
    assert r.status_code == 412
    r = write(platform, "POST", f"/v1/budgets/{bid}/agree", 2, json={"agreed_by": "Jo Smith", "person_agreed": False})
    assert r.status_code == 422 and "agreed_with_person" in r.json()["errors"]["person_agreed"][0]
    r = write(platform, "POST", f"/v1/budgets/{bid}/agree", 2, json={"agreed_by": "Jo Smith", "person_agreed": True})
    assert r.status_code == 200 and r.json()["status"] == "agreed", r.text
    assert r.json()["agreed_by"] == "Jo Smith" and r.json()["agreed_at"]
    r = write(platform, "POST", f"/v1/budgets/{bid}/resume", 3, json={})
    assert r.status_code == 409 and "suspend" in r.json()["detail"]
    r = write(platform, "POST", f"/v1/budgets/{bid}/activate", 3, json={"start_date": "2027-01-01"})
    assert r.status_code == 200 and r.json()["status"] == "active" and r.json()["started_on"] == "2027-01-01"

    # a change to an agreed budget needs a reason; holdings must still add up
    patch = {"annual_pence": 120000,
             "holdings": [{"type": "direct_payment", "pence": 60000}, {"type": "notional", "pence": 60000}]}
    r = write(platform, "PATCH", f"/v1/budgets/{bid}", 4, json=patch)
    assert r.status_code == 422 and "reason_required" in r.json()["errors"]["change.reason"][0]
    r = write(platform, "PATCH", f"/v1/budgets/{bid}", 4, json={"annual_pence": 120000, "change": {"reason": "x"}})
    assert r.status_code == 422 and "holdings_add_up" in r.json()["errors"]["holdings"][0]
    r = write(platform, "PATCH", f"/v1/budgets/{bid}", 4, json=dict(patch, change={
        "reason": "Annual review: more support at home", "effective_from": "2027-02-01"}))
    assert r.status_code == 200 and r.json()["version"] == 5 and r.json()["annual_pence"] == 120000, r.text

    swim = {"description": "Swimming lessons", "category": "physical_activity", "sector": "local_authority",
            "pence": 1500, "frequency": "monthly", "effective_from": "2027-02-01",
            "change": {"reason": "He wants to swim with his grandson"}}
    r = write(platform, "POST", f"/v1/budgets/{bid}/line-items", 5, json=swim)
    assert r.status_code == 201, r.text
    swim_id = r.headers["Location"].rsplit("/", 1)[-1]
    assert r.json()["version"] == 6 and r.json()["allocated_pence"] == 30000 + 18000
    r = platform.call("social_care", "GET", f"/v1/budgets/{bid}/line-items/{swim_id}")
    assert r.status_code == 200 and r.json()["description"] == "Swimming lessons"
    r = write(platform, "PATCH", f"/v1/budgets/{bid}/line-items/{swim_id}", 6,
              json={"pence": 2000, "change": {"reason": "Price went up", "effective_from": "2027-04-01"}})
    assert r.status_code == 200 and r.json()["version"] == 7, r.text
    r = write(platform, "PATCH", f"/v1/budgets/{bid}/line-items/{swim_id}", 7,
              json={"pence": 2000000, "change": {"reason": "typo"}})
    assert r.status_code == 422 and "within_budget" in r.json()["detail"], r.text
    r = write(platform, "DELETE", f"/v1/budgets/{bid}/line-items/{gym['id']}", 7,
              params={"reason": "Gym closed", "effective_from": "2027-05-01"})
    assert r.status_code == 200 and r.json()["version"] == 8, r.text
    assert [i["description"] for i in r.json()["line_items"]] == ["Swimming lessons"]

    # review: active ⇄ under_review
    r = write(platform, "POST", f"/v1/budgets/{bid}/review", 8, json={"action": "complete", "outcome": "x"})
    assert r.status_code == 409 and "not under review" in r.json()["detail"]
    r = write(platform, "POST", f"/v1/budgets/{bid}/review", 8, json={"action": "start", "reason": "Six-month review"})
    assert r.status_code == 200 and r.json()["status"] == "under_review", r.text
    r = write(platform, "POST", f"/v1/budgets/{bid}/review", 9,
              json={"action": "complete", "outcome": "Keep as it is", "next_review_date": "2027-09-01"})
    assert r.status_code == 200 and r.json()["status"] == "active" and r.json()["review"]["outcome"] == "Keep as it is"

    # suspended (e.g. a long hospital stay), resumed, ended; an ended budget is final
    r = write(platform, "POST", f"/v1/budgets/{bid}/suspend", 10,
              json={"reason": "Admitted to hospital", "effective_from": "2027-06-01", "effective_to": "2027-06-20"})
    assert r.status_code == 200 and r.json()["status"] == "suspended", r.text
    assert r.json()["suspension"]["effective_to"] == "2027-06-20"
    r = write(platform, "POST", f"/v1/budgets/{bid}/suspend", 11, json={"reason": "again"})
    assert r.status_code == 409
    r = write(platform, "POST", f"/v1/budgets/{bid}/resume", 11, json={"reason": "Home again"})
    assert r.status_code == 200 and r.json()["status"] == "active" and r.json()["suspension"] is None
    r = write(platform, "POST", f"/v1/budgets/{bid}/end", 12, json={"reason": "Moved out of area"})
    assert r.status_code == 200 and r.json()["status"] == "ended" and r.json()["version"] == 13
    for method, path, body in (("PATCH", "", {"care_coordinator": "Sam"}), ("POST", "/activate", {}),
                               ("POST", "/line-items", dict(swim, change={"reason": "x"}))):
        r = write(platform, method, f"/v1/budgets/{bid}{path}", 13, json=body)
        assert r.status_code == 409 and ("ended" in r.json()["detail"]), (path, r.text)

    # the history says what changed, from what to what, why and from when
    r = platform.call("social_care", "GET", f"/v1/budgets/{bid}/changes")
    assert r.status_code == 200, r.text
    history = r.json()["items"]
    assert [(h["version"], h["type"]) for h in history] == [
        (1, "budget.created"), (2, "budget.planning-started"), (3, "budget.agreed"), (4, "budget.activated"),
        (5, "budget.changed"), (6, "budget.changed"), (7, "budget.changed"), (8, "budget.changed"),
        (9, "budget.review-started"), (10, "budget.reviewed"), (11, "budget.suspended"),
        (12, "budget.resumed"), (13, "budget.ended")]
    money = history[4]["change"]
    assert {"field": "annual_pence", "from": 114000, "to": 120000} in money["fields"]
    assert [f["field"] for f in money["fields"]] == ["annual_pence", "holdings"]
    assert money["reason"] == "Annual review: more support at home" and money["effective_from"] == "2027-02-01"
    assert [i["description"] for i in history[5]["change"]["line_items"]["added"]] == ["Swimming lessons"]
    [price] = history[6]["change"]["line_items"]["changed"]
    assert price["fields"] == [{"field": "pence", "from": 1500, "to": 2000}]
    assert history[6]["change"]["effective_from"] == "2027-04-01"
    assert [i["id"] for i in history[7]["change"]["line_items"]["removed"]] == [gym["id"]]
    assert history[7]["change"]["reason"] == "Gym closed"
    suspended = history[10]["change"]
    assert {"field": "status", "from": "active", "to": "suspended"} in suspended["fields"]
    assert (suspended["reason"], suspended["effective_from"], suspended["effective_to"]) == (
        "Admitted to hospital", "2027-06-01", "2027-06-20")
    assert history[0]["change"]["line_items"]["added"][0]["description"] == "Gym membership"

    # every event reached the gateway; the portfolio holds the budget's newest state
    doc = platform.portfolio_shows(nhs, lambda d: d["budget"] and d["budget"]["version"] == 13)
    assert doc["budget"]["status"] == "ended" and doc["budget"]["last_change"]["reason"] == "Moved out of area"
    budget_events = [t for t in doc["timeline"] if t["service"] == "budgets"]
    assert len(budget_events) == 13
    assert any("annual_pence 114000 → 120000" in t["summary"] for t in budget_events)


def test_the_budget_shows_in_the_portfolio_with_its_priorities_merged(platform):
    nhs = new_nhs()
    plan = make_plan(platform, nhs)
    r = platform.call("social_care", "POST", "/v1/budgets", json=budget_body(nhs, plan["id"]))
    assert r.status_code == 201, r.text
    budget = r.json()

    doc = platform.portfolio_shows(nhs, lambda d: d["budget"] is not None and d["plan"] is not None)
    section = doc["budget"]
    assert section["id"] == budget["id"] and section["status"] == "requested"
    assert section["plan_id"] == plan["id"] and section["annual_pence"] == 114000
    assert section["currency"] == "GBP" and section["holdings"][0]["type"] == "direct_payment"
    assert section["line_items"][0]["description"] == "Gym membership"
    assert section["holder"]["relationship"] == "person"

    by_text = {p["text"]: p for p in doc["priorities"]}
    walk = by_text["Walk my grandson to school"]
    assert sorted(s["service"] for s in walk["sources"]) == ["budgets", "plans"]
    assert {s["ref"] for s in walk["sources"]} == {plan["id"], budget["id"]}
    football = by_text["Lose enough weight to play football again"]
    assert [s["service"] for s in football["sources"]] == ["budgets"]
    assert doc["freshness"]["budgets"]["last_event_type"] == "budget.created"


def _stored(platform, nhs: str) -> tuple[int, int]:
    """(budgets, outbox rows) for this person in the budgets service's own database."""
    from services.budgets.models import Budget, outbox
    db = platform.database("budgets")
    try:
        with db.session() as s:
            budgets = s.execute(select(func.count()).select_from(Budget).where(Budget.nhs_number == nhs)).scalar_one()
            events = s.execute(select(func.count()).select_from(outbox).where(outbox.c.subject == nhs)).scalar_one()
    finally:
        db.dispose()
    return budgets, events


@pytest.mark.parametrize("category", ["alcohol", "tobacco", "gambling", "debt_repayment", "illegal",
                                      "emergency_care", "gp_services"])
def test_an_excluded_category_is_refused_naming_the_rule_and_nothing_is_stored(platform, category):
    nhs = new_nhs()
    items = [{"description": "Fine", "category": "therapy", "sector": "nhs", "pence": 100},
             {"description": "Not fine", "category": category, "sector": "private", "pence": 100}]
    r = platform.call("social_care", "POST", "/v1/budgets",
                      json=budget_body(nhs, str(uuid.uuid4()), line_items=items))
    assert r.status_code == 422, r.text
    assert r.headers["Content-Type"] == "application/problem+json"
    [message] = r.json()["errors"]["line_items.1.category"]
    assert "rule: excluded_category" in message
    assert "line_items.0.category" not in r.json()["errors"]
    assert _stored(platform, nhs) == (0, 0)
    assert platform.call("admin", "GET", "/v1/budgets", params={"nhs_number": nhs}).json()["items"] == []


def test_holdings_that_do_not_add_up_and_a_budget_without_a_plan_are_refused(platform):
    nhs = new_nhs()
    r = platform.call("social_care", "POST", "/v1/budgets", json=budget_body(nhs, str(uuid.uuid4()), holdings=[
        {"type": "direct_payment", "pence": 54000}, {"type": "third_party", "pence": 50000}]))
    assert r.status_code == 422, r.text
    [message] = r.json()["errors"]["holdings"]
    assert "rule: holdings_add_up" in message and "104000" in message and "114000" in message

    body = budget_body(nhs, "x")
    del body["plan_id"]
    for variant in (body, dict(body, plan_id=None), dict(body, plan_id="not-a-plan")):
        r = platform.call("social_care", "POST", "/v1/budgets", json=variant)
        assert r.status_code == 422, r.text
        assert "rule: plan_required" in r.json()["errors"]["plan_id"][0]

    # several broken rules at once: each is named
    r = platform.call("social_care", "POST", "/v1/budgets", json=dict(body, annual_pence=1, line_items=[
        {"description": "Cigarettes", "category": "tobacco", "sector": "private", "pence": 100}]))
    assert r.status_code == 422
    assert {"plan_id", "holdings", "line_items.0.category"} <= set(r.json()["errors"])

    # money is integer pence in GBP
    r = platform.call("social_care", "POST", "/v1/budgets",
                      json=budget_body(nhs, str(uuid.uuid4()), annual_pence=1140.5, currency="EUR"))
    assert r.status_code == 422 and {"annual_pence", "currency"} <= set(r.json()["errors"])

    assert _stored(platform, nhs) == (0, 0)
    assert platform.call("admin", "GET", "/v1/budgets", params={"nhs_number": nhs}).json()["items"] == []


def test_a_refused_change_to_a_budget_stores_nothing(platform):
    nhs = new_nhs()
    r = platform.call("social_care", "POST", "/v1/budgets", json=budget_body(nhs, str(uuid.uuid4())))
    bid = r.json()["id"]
    assert _stored(platform, nhs) == (1, 1)
    bad = [
        ("POST", "/line-items", {"description": "Beer", "category": "alcohol", "sector": "private", "pence": 500},
         "category", "excluded_category"),
        ("POST", "/line-items", {"description": "Class", "category": "course", "sector": "voluntary", "pence": 500,
                                 "priority_ids": [str(uuid.uuid4())]}, "priority_ids", "serves_budget_priorities"),
        ("POST", "/line-items", {"description": "PA", "category": "personal_assistant", "sector": "private",
                                 "pence": 500, "paid_from": "third_party"}, "paid_from", "paid_from_holding"),
        ("PATCH", "", {"annual_pence": 100000}, "holdings", "holdings_add_up"),
        ("PATCH", "", {"plan_id": None}, "plan_id", "plan_required"),
    ]
    for method, path, body, field, rule in bad:
        r = write(platform, method, f"/v1/budgets/{bid}{path}", 1, json=body)
        assert r.status_code == 422, (path, body, r.text)
        assert rule in " ".join(r.json()["errors"][field]), r.json()
    r = write(platform, "PATCH", f"/v1/budgets/{bid}/line-items/{uuid.uuid4()}", 1, json={"pence": 1})
    assert r.status_code == 404
    r = platform.call("social_care", "GET", f"/v1/budgets/{bid}")
    assert r.json()["version"] == 1 and len(r.json()["line_items"]) == 1 and r.json()["annual_pence"] == 114000
    assert _stored(platform, nhs) == (1, 1)


def test_idempotent_create_and_paginated_list(platform):
    nhs = new_nhs()
    plan_id = str(uuid.uuid4())
    key = {"Idempotency-Key": "create-" + nhs}
    first = platform.call("social_care", "POST", "/v1/budgets", json=budget_body(nhs, plan_id), headers=dict(key))
    again = platform.call("social_care", "POST", "/v1/budgets", json=budget_body(nhs, plan_id), headers=dict(key))
    assert first.status_code == again.status_code == 201
    assert again.json()["id"] == first.json()["id"] and again.headers.get("Idempotent-Replayed") == "true"
    for _ in range(2):
        assert platform.call("social_care", "POST", "/v1/budgets", json=budget_body(nhs, plan_id)).status_code == 201
    assert _stored(platform, nhs) == (3, 3)

    platform.admit(nhs)  # the hospital reads them once it has declared the admission
    seen, cursor = [], None
    while True:
        params = {"nhs_number": nhs, "limit": 2, **({"cursor": cursor} if cursor else {})}
        page = platform.call("hospital", "GET", "/v1/budgets", params=params).json()
        seen += [b["id"] for b in page["items"]]
        cursor = page["next_cursor"]
        if not cursor:
            break
    assert len(seen) == len(set(seen)) == 3 and seen[0] == first.json()["id"]
    r = platform.call("hospital", "GET", "/v1/budgets", params={"nhs_number": "1234567890"})
    assert r.status_code == 422 and "nhs_number" in r.json()["errors"]


def test_agreement_needs_what_matters_what_it_pays_for_and_money_within_the_budget(platform):
    nhs = new_nhs()
    therapy = {"description": "Talking therapy (weekly, 12 weeks)", "category": "therapy", "sector": "voluntary",
               "pence": 5000, "frequency": "weekly", "effective_from": "2027-01-04", "effective_to": "2027-03-29"}
    r = platform.call("social_care", "POST", "/v1/budgets", json=budget_body(
        nhs, str(uuid.uuid4()), priorities=[], line_items=[therapy, dict(therapy, effective_to=None)]))
    assert r.status_code == 201, r.text
    budget = r.json()
    assert [i["annual_pence"] for i in budget["line_items"]] == [12 * 5000, 52 * 5000]  # 12 sessions, not 52
    assert budget["allocated_pence"] == 64 * 5000 and budget["unallocated_pence"] == 114000 - 64 * 5000
    bid = budget["id"]
    assert write(platform, "POST", f"/v1/budgets/{bid}/start-planning", 1, json={}).status_code == 200
    r = write(platform, "POST", f"/v1/budgets/{bid}/agree", 2, json={"agreed_by": "Jo", "person_agreed": True})
    assert r.status_code == 409, r.text
    detail = r.json()["detail"]
    assert "priorities is empty" in detail and "within_budget" in detail

    # before agreement the plan may be drafted over the amount; fix it, then agree
    open_ended = budget["line_items"][1]["id"]
    r = write(platform, "DELETE", f"/v1/budgets/{bid}/line-items/{open_ended}", 2)
    assert r.status_code == 200 and r.json()["allocated_pence"] == 60000
    r = write(platform, "PATCH", f"/v1/budgets/{bid}", 3, json={"priorities": [
        {"text": "Feel less low", "category": "mental_wellbeing"}]})
    assert r.status_code == 200, r.text
    r = write(platform, "POST", f"/v1/budgets/{bid}/agree", 4, json={"agreed_by": "Jo", "person_agreed": True})
    assert r.status_code == 200 and r.json()["status"] == "agreed", r.text

    # once agreed, a change that spends more than the budget is refused and nothing is stored
    r = write(platform, "POST", f"/v1/budgets/{bid}/line-items", 5, json=dict(
        therapy, effective_to=None, change={"reason": "More sessions"}))
    assert r.status_code == 422 and "within_budget" in r.json()["errors"]["line_items"][0], r.text
    assert platform.call("social_care", "GET", f"/v1/budgets/{bid}").json()["version"] == 5


def test_budgets_on_the_embedded_defaults(make_platform):
    """SQLite files and kombu's filesystem transport under var/: what `make run` uses."""
    embedded = make_platform(services=("budgets",), broker="filesystem", database="sqlite").start()
    nhs = new_nhs()
    ids = []
    for _ in range(3):
        r = embedded.call("social_care", "POST", "/v1/budgets", json=budget_body(nhs, str(uuid.uuid4())))
        assert r.status_code == 201, r.text
        ids.append(r.json()["id"])
    r = write(embedded, "POST", f"/v1/budgets/{ids[0]}/line-items", 1, json={
        "description": "Beer", "category": "alcohol", "sector": "private", "pence": 500})
    assert r.status_code == 422 and "excluded_category" in r.json()["errors"]["category"][0]
    assert write(embedded, "POST", f"/v1/budgets/{ids[0]}/start-planning", 1, json={}).status_code == 200
    page = embedded.call("social_care", "GET", "/v1/budgets", params={"nhs_number": nhs, "limit": 2}).json()
    rest = embedded.call("social_care", "GET", "/v1/budgets",
                         params={"nhs_number": nhs, "cursor": page["next_cursor"]}).json()
    assert [b["id"] for b in page["items"] + rest["items"]] == ids and rest["next_cursor"] is None
    doc = embedded.portfolio_shows(nhs, lambda d: d["budget"] and d["budget"]["status"] == "planning")
    assert doc["budget"]["id"] == ids[0]
