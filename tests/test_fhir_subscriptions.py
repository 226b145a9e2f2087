"""FHIR Subscriptions (Backport IG, topic-based) on the webhook dispatcher: a budget change arrives as
a signed history Bundle with a SubscriptionStatus and event numbers; ``$events`` gives back the ones
the receiver missed while it was down; ``$status`` counts them. Real HTTP, PostgreSQL, RabbitMQ."""
from __future__ import annotations

import json

import pytest
import requests
from standardwebhooks.webhooks import Webhook

from bodies import notional_budget
from calls import if_match
from harness import wait_for
from nhs import new_nhs
from oauth_client import FHIR, access_token, bearer, fhir_request, new_key, register
from test_fhir_api import valid
from test_webhooks import Receiver, make_plan, start_dispatcher

TOPIC = "https://coproduction.example.org/fhir/SubscriptionTopic/budget-changes"
BACKPORT = "http://hl7.org/fhir/uv/subscriptions-backport/StructureDefinition/"


@pytest.fixture(scope="module")
def platform(make_module_platform):
    p = make_module_platform(services=("plans", "budgets")).start()
    p.key = new_key("ES384")
    # the council's own system: the same organisation as the static social care client that holds budgets
    p.client = register(p, p.key, role="social_care", org="ORGSOC", name="Council care system")
    return p


def fhir(platform, method: str, path: str, **kwargs) -> requests.Response:
    return fhir_request(platform, access_token(platform, platform.client, platform.key)["access_token"], method, path,
                        **kwargs)


def subscription(endpoint: str, nhs: str) -> dict:
    return {"resourceType": "Subscription", "status": "requested", "reason": "Keep the council's record current",
            "criteria": TOPIC,
            "_criteria": {"extension": [{"url": BACKPORT + "backport-filter-criteria",
                                         "valueString": f"Account?patient=Patient/{nhs}"}]},
            "channel": {"type": "rest-hook", "endpoint": endpoint, "payload": "application/fhir+json",
                        "_payload": {"extension": [{"url": BACKPORT + "backport-payload-content",
                                                    "valueCode": "full-resource"}]},
                        "header": ["Authorization: Bearer receiver-secret"]}}


def make_budget(platform, nhs: str) -> tuple[str, int]:
    plan_id = make_plan(platform, nhs)
    r = platform.call("social_care", "POST", "/v1/budgets", json=notional_budget(
        nhs, plan_id, 114000, currency="GBP", holder={"relationship": "person"}))
    assert r.status_code == 201, r.text
    return r.json()["id"], 1


def change_budget(platform, budget_id: str, version: int, pence: int) -> int:
    r = platform.call("social_care", "PATCH", f"/v1/budgets/{budget_id}", headers=if_match(version),
                      json={"annual_pence": pence, "holdings": [{"type": "notional", "pence": pence}]})
    assert r.status_code == 200, r.text
    return r.json()["version"]


def parameters(bundle: dict) -> dict:
    status = bundle["entry"][0]["resource"]
    assert status["resourceType"] == "Parameters" and status["meta"]["profile"] == [
        BACKPORT + "backport-subscription-status-r4"]
    out = {}
    for p in status["parameter"]:
        if p["name"] == "notification-event":
            out.setdefault("events", []).append({q["name"]: q.get("valueString") or q.get("valueReference")
                                                 for q in p["part"]})
        else:
            out[p["name"]] = next(v for k, v in p.items() if k.startswith("value"))
    return out


def test_a_budget_change_arrives_as_a_backport_notification_and_events_replays_what_was_missed(platform):
    receiver = Receiver()
    try:
        start_dispatcher(platform)
        nhs, other = new_nhs(), new_nhs()
        budget_id, version = make_budget(platform, nhs)
        make_budget(platform, other)  # another person's budget: outside the subscription's filter
        r = fhir(platform, "POST", "/Subscription", json=subscription(receiver.url(), nhs),
                 headers={"Content-Type": "application/fhir+json"})
        assert r.status_code == 201, r.text
        created = valid(r.json())
        sub_id = created["id"]
        secret = next(e["valueString"] for e in created["extension"] if e["url"].endswith("signing-secret"))
        assert created["status"] == "active" and created["criteria"] == TOPIC

        version = change_budget(platform, budget_id, version, 120000)
        wait_for(lambda: receiver.delivered(), timeout=30, message="the first notification")
        [first] = receiver.delivered()
        bundle = valid(json.loads(first["body"]))
        Webhook(secret).verify(first["body"], first["headers"])  # signed as every webhook is
        assert first["headers"]["Content-Type"] == "application/fhir+json"
        assert first["headers"]["Authorization"] == "Bearer receiver-secret"
        assert bundle["type"] == "history"
        status = parameters(bundle)
        assert status["type"] == "event-notification" and status["topic"] == TOPIC
        assert status["events-since-subscription-start"] == "1"
        assert [e["event-number"] for e in status["events"]] == ["1"]
        account = bundle["entry"][1]["resource"]
        assert account["resourceType"] == "Account" and account["id"] == budget_id
        annual = next(e for e in account["extension"] if e["url"].endswith("annual-amount"))["valueMoney"]
        assert annual == {"value": 1200.0, "currency": "GBP"}

        receiver.stop()  # the receiver goes down: these two are not delivered
        version = change_budget(platform, budget_id, version, 126000)
        version = change_budget(platform, budget_id, version, 130000)
        wait_for(lambda: parameters(fhir(platform, "GET", f"/Subscription/{sub_id}/$status").json())[
            "events-since-subscription-start"] == "3", timeout=30, message="three events numbered")
        status_bundle = valid(fhir(platform, "GET", f"/Subscription/{sub_id}/$status").json())
        assert parameters(status_bundle)["type"] == "query-status"

        # the receiver comes back having seen event 1: it asks for what came after
        r = fhir(platform, "GET", f"/Subscription/{sub_id}/$events", params={"eventsSinceNumber": 2})
        assert r.status_code == 200, r.text
        missed = valid(r.json())
        status = parameters(missed)
        assert status["type"] == "query-event" and [e["event-number"] for e in status["events"]] == ["2", "3"]
        amounts = [next(e for e in entry["resource"]["extension"] if e["url"].endswith("annual-amount"))
                   ["valueMoney"]["value"] for entry in missed["entry"][1:]]
        assert amounts == [1260.0, 1300.0]

        # another client cannot see it; a subscription to a topic it may not read is refused
        r = requests.get(platform.url + FHIR + f"/Subscription/{sub_id}/$events", timeout=30,
                         headers=bearer(platform.tokens["admin"]))
        assert r.status_code == 404 and r.json()["resourceType"] == "OperationOutcome"
        bad = subscription(receiver.url(), nhs)
        bad["criteria"] = "https://example.org/nope"
        bad["channel"]["type"] = "email"
        r = fhir(platform, "POST", "/Subscription", json=bad, headers={"Content-Type": "application/fhir+json"})
        assert r.status_code == 422
        assert {e for i in r.json()["issue"] for e in i["expression"]} == {"Subscription.criteria",
                                                                           "Subscription.channel.type"}
    finally:
        receiver.stop()
        platform.stop_thread("gateway-deliver")
