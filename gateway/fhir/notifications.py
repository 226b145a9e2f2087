"""An event of the change log as a Subscriptions Backport IG notification (for the dispatcher and
``$events``): the focus resource is built from the event itself, as its aggregate was at that version."""
from __future__ import annotations

import json

from interop import fhir_care, fhir_plans
from interop.fhir_subscriptions import TOPICS, notification_bundle, status_parameters

from ..policy import Visibility
from ..projection import read as read_event

FHIR_JSON = "application/fhir+json"


def focus(event: dict, plans_visible: bool) -> dict:
    """The resource an event is about, at the event's version."""
    service, _kind, data = read_event(event)
    nhs = event["subject"]
    section = dict(data, id=event["aggregateid"], version=event["aggregateversion"], updated_at=event["time"])
    if service == "plans":
        section.pop("plan_id", None)
        return fhir_plans.care_plan(dict(section, nhs_number=nhs), fhir_plans.SERVER)
    if service == "budgets":
        return fhir_care.account(nhs, section, plan_visible=plans_visible)
    if service == "decisions":
        return fhir_care.task(nhs, section)
    return fhir_care.episode_of_care(nhs, section)


def event_entry(number: int, event: dict, content: str, base: str, plans_visible: bool) -> tuple[dict, dict | None]:
    """(the notification-event, the focus resource if the payload carries it)."""
    resource = focus(event, plans_visible)
    item = {"number": number, "timestamp": event["time"]}
    if content != "empty":
        item["focus"] = f"{base}/{resource['resourceType']}/{resource['id']}"
    return item, resource if content == "full-resource" else None


def notification(session, row, body: str, caller) -> tuple[dict, bytes]:
    """(headers, body) of one delivery of a FHIR subscription: an event-notification Bundle."""
    fhir = row["fhir"]
    event = json.loads(body)
    plans_visible = Visibility.of(session, caller, [event["subject"]]).allows(event["subject"], "plans")
    item, resource = event_entry(row["event_number"], event, fhir["content"], fhir["base"], plans_visible)
    status = status_parameters(row["subscription_id"], fhir, row["sub_status"], "event-notification",
                               row["events_count"], [item], fhir["base"])
    bundle = notification_bundle(status, fhir["base"], row["subscription_id"], [resource] if resource else [],
                                 event["time"])
    headers = {"Content-Type": FHIR_JSON}
    for line in fhir.get("headers") or []:
        name, _, value = line.partition(":")
        headers[name.strip()] = value.strip()
    return headers, json.dumps(bundle).encode()


def topic_service(topic: str) -> str:
    return TOPICS[topic]["service"]
