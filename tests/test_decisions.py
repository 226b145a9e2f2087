"""Shared decisions (NICE NG197) through the gateway, over RabbitMQ and PostgreSQL."""
from __future__ import annotations

import copy
from datetime import date, timedelta

import pytest
from sqlalchemy import func, select

from bodies import AGREEMENT
from calls import if_match
from coproduction.nhs_number import with_check_digit
from harness import wait_for
from services.decisions.schemas import parse_natural_frequency

NHS = with_check_digit("943476591")
OTHER_NHS = with_check_digit("943476592") or with_check_digit("943476593")

PLAN = {
    "nhs_number": NHS, "conditions": ["type 2 diabetes", "low mood"],
    "priorities": [{"text": "Keep driving for work", "category": "work_and_money",
                    "expressed_by": "person", "rank": 1, "status": "active"}],
    "next_review_date": (date.today() + timedelta(days=120)).isoformat(),
    "care_coordinator": "Practice nurse J Okafor",
}


def decision_body(priority_id: str | None = None, nhs: str = NHS) -> dict:
    priority = {"text": "Keep driving for work", "category": "work_and_money", "expressed_by": "person"}
    if priority_id:
        priority["id"] = priority_id
    return {
        "nhs_number": nhs, "setting": "inpatient", "encounter_id": "ADM-1",
        "question": "How should we manage his blood glucose?",
        "priorities": [priority],
        "options": [
            {"label": "Start insulin", "benefits": ["Glucose comes down within days"],
             "risks": [{"text": "a hypo needing someone else's help", "natural_frequency": "10 in 100",
                        "timeframe": "in the first year"}],
             "consequences": ["Finger-prick check before every drive"]},
            {"label": "Add a second tablet", "benefits": ["No injections"],
             "risks": [{"text": "thrush", "natural_frequency": "5 in 100"}],
             "consequences": ["Kidney blood test in 3 months"]},
            {"label": "No change until GP review", "is_no_change": True,
             "benefits": ["Nothing new to learn while in hospital"],
             "risks": [{"text": "glucose stays high until the review", "natural_frequency": "60 in 100"}],
             "consequences": ["GP review within 2 weeks"]},
        ],
        "decision_aids": [{"title": "Type 2 diabetes: treatment choices", "format": "patient_decision_aid",
                           "source": "NICE"}],
        "lead_clinician": "Dr A Patel",
    }


def admitted(p):
    """The hospital has declared both people's admissions (its care relationship with them)."""
    for nhs in (NHS, OTHER_NHS):
        p.admit(nhs)
    return p


@pytest.fixture
def platform(make_platform):
    return admitted(make_platform(services=("plans", "decisions")).start())


@pytest.fixture(scope="module")
def refusing(make_module_platform):
    """One platform for the refusal cases: none of them may store anything."""
    return admitted(make_module_platform(services=("plans", "decisions")).start())


def stored_decisions(platform) -> tuple[int, int]:
    """(decisions, outbox rows) held by the decisions service's own database."""
    from services.decisions.models import Decision, outbox
    db = platform.database("decisions")
    with db.session() as s:
        counts = (s.execute(select(func.count()).select_from(Decision)).scalar_one(),
                  s.execute(select(func.count()).select_from(outbox)).scalar_one())
    db.dispose()
    return counts


def open_decision(platform, body=None, role="hospital"):
    r = platform.call(role, "POST", "/v1/decisions", json=body or decision_body())
    assert r.status_code == 201, r.text
    return r.json()


def test_a_reused_priority_id_joins_the_plan_priority_in_the_portfolio(platform):
    r = platform.call("gp", "POST", "/v1/plans", json=PLAN)
    assert r.status_code == 201, r.text
    plan = r.json()
    assert platform.call("gp", "POST", f"/v1/plans/{plan['id']}/agree", headers=if_match(1),
                         json=AGREEMENT).status_code == 200
    doc = platform.portfolio_shows(NHS, lambda d: d["plan"] and d["plan"]["status"] == "active")
    [priority] = doc["priorities"]

    decision = open_decision(platform, decision_body(priority["id"]))
    assert decision["status"] == "opened" and decision["version"] == 1
    assert decision["priorities"][0]["id"] == priority["id"], "a reused priority id is kept as given"
    assert all(o["id"] for o in decision["options"])
    assert decision["options"][0]["risks"][0] == {"text": "a hypo needing someone else's help",
                                                  "natural_frequency": "10 in 100", "count": 10, "out_of": 100,
                                                  "timeframe": "in the first year"}

    doc = platform.portfolio_shows(NHS, lambda d: d["decisions"])
    [item] = doc["priorities"]
    assert item["id"] == priority["id"]
    assert item["initiatives"] == ["decisions", "plans"]
    assert {(s["service"], s["ref"]) for s in item["sources"]} == {("plans", plan["id"]),
                                                                   ("decisions", decision["id"])}
    assert doc["decisions"][0]["id"] == decision["id"] and doc["decisions"][0]["status"] == "opened"

    chosen = decision["options"][1]
    r = platform.call("hospital", "POST", f"/v1/decisions/{decision['id']}/record", headers=if_match(1),
                      json={"chosen_option_id": chosen["id"], "persons_reason": "Worried about hypos while driving",
                            "clinician": "Dr A Patel", "others_involved": ["his wife"]})
    assert r.status_code == 200, r.text
    assert r.headers["ETag"] == '"2"'
    outcome = r.json()["outcome"]
    assert outcome["chosen_option_label"] == "Add a second tablet" and outcome["chosen_is_no_change"] is False
    assert outcome["persons_reason"] == "Worried about hypos while driving"

    doc = platform.portfolio_shows(NHS, lambda d: d["decisions"] and d["decisions"][0]["status"] == "recorded")
    assert doc["decisions"][0]["outcome"]["chosen_option_id"] == chosen["id"]
    assert [t["type"] for t in doc["timeline"]][:2] == ["decision.recorded", "decision.opened"]
    assert doc["priorities"][0]["initiatives"] == ["decisions", "plans"]


@pytest.mark.parametrize("change, field", [
    (lambda b: b.update(options=b["options"][2:]), "options"),                          # one option
    (lambda b: b["options"][2].update(is_no_change=False), "options"),                 # no "no change"
    (lambda b: b["options"][0].update(is_no_change=True), "options"),                  # two "no change"
    (lambda b: b.update(options=[]), "options"),
    (lambda b: b.pop("options"), "options"),
    (lambda b: b["options"][0]["risks"][0].update(natural_frequency="10%"), "options.0.risks.0.natural_frequency"),
    (lambda b: b["options"][0]["risks"][0].update(natural_frequency="120 in 100"),
     "options.0.risks.0.natural_frequency"),
    (lambda b: b["options"][0]["risks"][0].update(natural_frequency="3 in 7"), "options.0.risks.0.natural_frequency"),
    (lambda b: b["options"][0]["risks"][0].pop("natural_frequency"), "options.0.risks.0.natural_frequency"),
    (lambda b: b["options"][1].update(label="Start insulin"), "options"),
    (lambda b: b.update(setting="ward"), "setting"),
    (lambda b: b.update(nhs_number="9434765910"), "nhs_number"),
    (lambda b: b.update(question=""), "question"),
    (lambda b: b.update(colour="blue"), "colour"),
    (lambda b: b["priorities"][0].update(id="not-a-uuid"), "priorities.0.id"),
])
def test_bad_decisions_are_refused_naming_the_field_and_nothing_is_stored(refusing, change, field):
    body = decision_body()
    change(body)
    r = refusing.call("hospital", "POST", "/v1/decisions", json=body)
    assert r.status_code == 422, r.text
    assert r.headers["Content-Type"].startswith("application/problem+json")
    assert field in r.json()["errors"], r.json()
    assert stored_decisions(refusing) == (0, 0)


def test_natural_frequencies():
    assert parse_natural_frequency("10 in 100") == (10, 100)
    assert parse_natural_frequency("1 in 1,000") == (1, 1000)
    assert parse_natural_frequency(" 0 in 10 ") == (0, 10)
    for bad in ("10%", "1 in 3", "one in 100", "101 in 100", "10 out of 100", "", "10 in 100 people"):
        with pytest.raises(ValueError):
            parse_natural_frequency(bad)


def test_recording_rules_give_clear_errors_and_change_nothing(platform):
    d = open_decision(platform)
    url = f"/v1/decisions/{d['id']}"
    no_change = next(o for o in d["options"] if o["is_no_change"])
    record = {"chosen_option_id": no_change["id"], "persons_reason": "Wants to wait for his GP",
              "clinician": "Dr A Patel"}
    assert platform.call("hospital", "POST", url + "/record", json=record).status_code == 428
    r = platform.call("hospital", "POST", url + "/record", headers=if_match(7), json=record)
    assert r.status_code == 412 and r.headers["ETag"] == '"1"'

    # a chosen option that is not one of its options
    other = open_decision(platform)
    r = platform.call("hospital", "POST", url + "/record", headers=if_match(1),
                      json=dict(record, chosen_option_id=other["options"][0]["id"]))
    assert r.status_code == 422, r.text
    assert "chosen_option_id" in r.json()["errors"]
    r = platform.call("hospital", "POST", url + "/record", headers=if_match(1),
                      json=dict(record, chosen_option_id="nope"))
    assert r.status_code == 422 and "chosen_option_id" in r.json()["errors"]
    r = platform.call("hospital", "POST", url + "/record", headers=if_match(1),
                      json={"chosen_option_id": no_change["id"]})
    assert r.status_code == 422 and {"persons_reason", "clinician"} <= set(r.json()["errors"])
    got = platform.call("hospital", "GET", url).json()
    assert got["status"] == "opened" and got["version"] == 1 and got["outcome"] is None
    assert stored_decisions(platform) == (2, 2)

    r = platform.call("hospital", "POST", url + "/record", headers=if_match(1), json=record)
    assert r.status_code == 200, r.text
    assert r.json()["outcome"]["chosen_is_no_change"] is True

    # recorded once only; and it cannot be deferred or changed any more
    r = platform.call("hospital", "POST", url + "/record", headers=if_match(2), json=record)
    assert r.status_code == 409 and "supersede" in r.json()["detail"]
    r = platform.call("hospital", "POST", url + "/defer", headers=if_match(2),
                      json={"reason": "x", "revisit_by": (date.today() + timedelta(days=3)).isoformat()})
    assert r.status_code == 409
    r = platform.call("hospital", "PATCH", url, headers=if_match(2), json={"question": "Other?"})
    assert r.status_code == 409
    assert stored_decisions(platform) == (2, 3)


def test_defer_then_record_and_follow_up(platform):
    d = open_decision(platform)
    url = f"/v1/decisions/{d['id']}"
    revisit = (date.today() + timedelta(days=7)).isoformat()
    r = platform.call("hospital", "POST", url + "/defer", headers=if_match(1),
                      json={"reason": "", "revisit_by": (date.today() - timedelta(days=1)).isoformat()})
    assert r.status_code == 422 and {"reason", "revisit_by"} <= set(r.json()["errors"])
    r = platform.call("hospital", "POST", url + "/defer", headers=if_match(1),
                      json={"reason": "Wants to talk it over with his wife", "revisit_by": revisit,
                            "clinician": "Dr A Patel"})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["status"] == "deferred" and body["deferral"]["revisit_by"] == revisit
    assert body["follow_up"]["revisit_by"] == revisit

    # still open to change while deferred: a new option discussed, priorities kept
    options = copy.deepcopy(body["options"]) + [{"label": "Structured education first",
                                                 "risks": [{"text": "glucose stays high for a while",
                                                            "natural_frequency": "30 in 100"}]}]
    r = platform.call("hospital", "PATCH", url, headers=if_match(2), json={"options": options})
    assert r.status_code == 200, r.text
    assert len(r.json()["options"]) == 4 and r.json()["options"][0]["id"] == body["options"][0]["id"]
    r = platform.call("hospital", "PATCH", url, headers=if_match(3),
                      json={"options": options[:1]})
    assert r.status_code == 422 and "options" in r.json()["errors"]

    chosen = r = platform.call("hospital", "GET", url).json()["options"][3]
    r = platform.call("hospital", "POST", url + "/record", headers=if_match(3),
                      json={"chosen_option_id": chosen["id"], "persons_reason": "Learn more first",
                            "clinician": "Dr A Patel",
                            "follow_up": {"summary_given": True}})
    assert r.status_code == 200, r.text
    assert r.json()["status"] == "recorded" and r.json()["deferral"] is None
    assert len(r.json()["deferrals"]) == 1 and r.json()["follow_up"]["summary_given"] is True

    r = platform.call("hospital", "POST", url + "/follow-up", headers=if_match(4), json={})
    assert r.status_code == 422
    r = platform.call("hospital", "POST", url + "/follow-up", headers=if_match(4),
                      json={"letter_sent": True, "letter_sent_to": ["person", "GP"],
                            "letter_sent_at": "2026-11-25T12:00:00Z"})
    assert r.status_code == 200, r.text
    f = r.json()["follow_up"]
    assert f["summary_given"] is True and f["letter_sent_to"] == ["person", "GP"] and f["revisit_by"] == revisit

    doc = platform.portfolio_shows(NHS, lambda d: d["decisions"] and d["decisions"][0]["version"] == 5)
    assert doc["decisions"][0]["follow_up"]["letter_sent"] is True
    assert [t["type"] for t in doc["timeline"]] == ["decision.followed-up", "decision.recorded",
                                                    "decision.updated", "decision.deferred", "decision.opened"]


def test_supersede_by_new_decision_or_endpoint_and_never_record_a_superseded_one(platform):
    first = open_decision(platform)
    url = f"/v1/decisions/{first['id']}"
    record = {"chosen_option_id": first["options"][2]["id"], "persons_reason": "Wait for GP",
              "clinician": "Dr A Patel"}
    assert platform.call("hospital", "POST", url + "/record", headers=if_match(1),
                         json=record).status_code == 200

    # revisit at the GP practice (which holds his plan): a new decision superseding the first
    assert platform.call("gp", "POST", "/v1/plans", json=PLAN).status_code == 201
    r = platform.call("gp", "POST", url + "/supersede", json={"reason": "Revisited at GP review"})
    assert r.status_code == 428
    r = platform.call("gp", "POST", url + "/supersede", headers=if_match(2),
                      json={"reason": "Revisited at GP review", "setting": "primary", "encounter_id": None})
    assert r.status_code == 201, r.text
    second = r.json()
    assert second["status"] == "opened" and second["supersedes"] == first["id"]
    assert second["setting"] == "primary" and second["encounter_id"] is None
    assert second["question"] == first["question"]
    assert [o["id"] for o in second["options"]] == [o["id"] for o in first["options"]]
    assert second["priorities"] == first["priorities"]
    old = platform.call("hospital", "GET", url).json()
    assert old["status"] == "superseded" and old["superseded_by"] == second["id"] and old["version"] == 3
    assert old["outcome"]["persons_reason"] == "Wait for GP", "what was decided is kept"
    counts = stored_decisions(platform)

    # recording, deferring or superseding a superseded decision: 409 and nothing stored
    r = platform.call("hospital", "POST", url + "/record", headers=if_match(3), json=record)
    assert r.status_code == 409 and "superseded" in r.json()["detail"]
    r = platform.call("hospital", "POST", url + "/defer", headers=if_match(3),
                      json={"reason": "x", "revisit_by": (date.today() + timedelta(days=3)).isoformat()})
    assert r.status_code == 409
    r = platform.call("hospital", "POST", url + "/supersede", headers=if_match(3), json={"reason": "again"})
    assert r.status_code == 409
    r = platform.call("hospital", "POST", "/v1/decisions",
                      json=dict(decision_body(), supersedes=first["id"]))
    assert r.status_code == 409
    assert stored_decisions(platform) == counts

    # a new decision may name the one it supersedes when it is opened
    r = platform.call("hospital", "POST", "/v1/decisions", headers=if_match(9),
                      json=dict(decision_body(), supersedes=second["id"], supersede_reason="New admission"))
    assert r.status_code == 412
    r = platform.call("hospital", "POST", "/v1/decisions",
                      json=dict(decision_body(nhs=OTHER_NHS), supersedes=second["id"]))
    assert r.status_code == 422 and "supersedes" in r.json()["errors"]
    r = platform.call("hospital", "POST", "/v1/decisions",
                      json=dict(decision_body(), supersedes=second["id"], supersede_reason="New admission"))
    assert r.status_code == 201, r.text
    third = r.json()
    assert third["supersedes"] == second["id"] and third["supersede_reason"] == "New admission"
    assert platform.call("hospital", "GET", f"/v1/decisions/{second['id']}").json()["status"] == "superseded"

    doc = platform.portfolio_shows(NHS, lambda d: len(d["decisions"]) == 3 and
                                   sorted(x["status"] for x in d["decisions"]) == ["opened", "superseded",
                                                                                   "superseded"])
    superseded = {x["id"]: x for x in doc["decisions"]}
    assert superseded[first["id"]]["superseded_by"] == second["id"]
    assert superseded[first["id"]]["supersede_reason"] == "Revisited at GP review"


def test_list_pages_filters_idempotency_and_scopes(platform):
    made = [open_decision(platform) for _ in range(3)]
    open_decision(platform, decision_body(nhs=OTHER_NHS))
    seen, cursor = [], None
    while True:
        r = platform.call("hospital", "GET", "/v1/decisions",
                          params={"nhs_number": NHS, "limit": 2, **({"cursor": cursor} if cursor else {})})
        assert r.status_code == 200, r.text
        seen += [d["id"] for d in r.json()["items"]]
        cursor = r.json()["next_cursor"]
        if cursor is None:
            break
    assert seen == [d["id"] for d in made]
    r = platform.call("hospital", "GET", "/v1/decisions", params={"nhs_number": NHS, "cursor": "garbage!"})
    assert r.status_code == 422 and "cursor" in r.json()["errors"]
    r = platform.call("hospital", "GET", "/v1/decisions", params={"nhs_number": "123"})
    assert r.status_code == 422 and "nhs_number" in r.json()["errors"]
    r = platform.call("hospital", "GET", "/v1/decisions", params={"nhs_number": NHS, "status": "recorded"})
    assert r.json()["items"] == []

    # Idempotency-Key: a retried open returns the first decision, never a second one
    body = decision_body(nhs=OTHER_NHS)
    a = platform.call("hospital", "POST", "/v1/decisions", json=body, headers={"Idempotency-Key": "k-1"})
    b = platform.call("hospital", "POST", "/v1/decisions", json=body, headers={"Idempotency-Key": "k-1"})
    assert a.status_code == b.status_code == 201 and a.json()["id"] == b.json()["id"]
    assert b.headers.get("Idempotent-Replayed") == "true"

    # scopes: community providers cannot read or write decisions; social care cannot write them
    assert platform.call("community", "POST", "/v1/decisions", json=decision_body()).status_code == 403
    assert platform.call("community", "GET", f"/v1/decisions/{made[0]['id']}").status_code == 403
    assert platform.call("social_care", "POST", "/v1/decisions", json=decision_body()).status_code == 403
    assert platform.call("gp", "GET", f"/v1/decisions/{made[0]['id']}").status_code == 403  # no relationship
    assert platform.call("gp", "POST", "/v1/plans", json=PLAN).status_code == 201  # now it holds his plan
    assert platform.call("gp", "GET", f"/v1/decisions/{made[0]['id']}").status_code == 200
    assert platform.call("gp", "GET", "/v1/decisions/not-a-uuid").status_code == 404
    wait_for(lambda: stored_decisions(platform)[1] == 5, message="five decisions in the outbox")
