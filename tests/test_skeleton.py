"""The walking skeleton: a care plan travels from the plans service over RabbitMQ into the portfolio."""
from __future__ import annotations

from bodies import AGREEMENT
from calls import if_match

NHS = "9434765919"

PLAN = {
    "nhs_number": NHS,
    "conditions": ["type 2 diabetes", "low mood"],
    "priorities": [{"text": "Walk my grandson to school", "category": "physical_activity",
                    "expressed_by": "person", "rank": 1, "status": "active"}],
    "goals": [{"description": "Weight 105 kg",
               "target": {"measure": "body weight", "value": 105, "unit": "kg", "due": "2027-09-30"}}],
    "actions": [{"text": "Walk 15 minutes after lunch", "owner": "person"}],
    "next_review_date": "2027-03-14",
}


def test_plan_created_and_agreed_reaches_the_portfolio(platform):
    r = platform.call("gp", "POST", "/v1/plans", json=PLAN)
    assert r.status_code == 201, r.text
    plan = r.json()
    assert r.headers["ETag"] == '"1"' and plan["status"] == "draft"
    r = platform.call("gp", "POST", f"/v1/plans/{plan['id']}/agree", headers=if_match(1),
                      json=AGREEMENT)
    assert r.status_code == 200, r.text
    assert r.json()["status"] == "active" and r.json()["version"] == 2

    doc = platform.portfolio_shows(NHS, lambda d: d["plan"] and d["plan"]["status"] == "active")
    assert doc["plan"]["id"] == plan["id"]
    [priority] = doc["priorities"]
    assert priority["text"] == "Walk my grandson to school"
    assert priority["sources"][0]["service"] == "plans" and priority["sources"][0]["ref"] == plan["id"]
    assert priority["rank"] == 1
    assert [t["type"] for t in doc["timeline"]] == ["plan.agreed", "plan.created"]


def test_the_same_path_on_the_embedded_defaults(make_platform):
    """SQLite files and kombu's filesystem transport under var/: what `make run` uses."""
    platform = make_platform(broker="filesystem", database="sqlite").start()
    r = platform.call("gp", "POST", "/v1/plans", json=PLAN)
    assert r.status_code == 201, r.text
    platform.call("gp", "POST", f"/v1/plans/{r.json()['id']}/agree", headers=if_match(1),
                  json=AGREEMENT)
    doc = platform.portfolio_shows(NHS, lambda d: d["plan"] and d["plan"]["status"] == "active")
    assert doc["priorities"][0]["text"] == "Walk my grandson to school"
