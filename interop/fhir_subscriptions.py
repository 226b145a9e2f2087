"""Topic-based subscriptions as the FHIR R4 Subscriptions Backport IG (STU 1.1) writes them.

- Topics are canonical URLs (:data:`TOPICS`); each names the events it is triggered by and the
  resource a notification focuses on. They are advertised in the CapabilityStatement.
- A client asks with an R4 ``Subscription``: ``criteria`` = the topic's canonical, an optional
  ``_criteria`` filter (``Account?patient=Patient/<nhs>``), a ``rest-hook`` channel with an
  ``endpoint``, ``payload`` ``application/fhir+json`` and its content (``empty``, ``id-only``,
  ``full-resource``), and optional ``header`` lines sent with every notification.
- A notification is a ``history`` Bundle whose first entry is the R4 SubscriptionStatus (a
  ``Parameters`` resource, profile ``backport-subscription-status-r4``) with the subscription's
  event count and each event's number, then the focus resource (full-resource).

Pure functions: the gateway (gateway/fhir/subscriptions.py, gateway/fhir/notifications.py) keeps
the subscriptions and sends the notifications through the webhook dispatcher.
"""
from __future__ import annotations

import re
import uuid

BACKPORT = "http://hl7.org/fhir/uv/subscriptions-backport/StructureDefinition/"
SUBSCRIPTION_PROFILE = BACKPORT + "backport-subscription"
STATUS_PROFILE = BACKPORT + "backport-subscription-status-r4"
FILTER_CRITERIA = BACKPORT + "backport-filter-criteria"
PAYLOAD_CONTENT = BACKPORT + "backport-payload-content"
TOPIC_CANONICAL = BACKPORT + "capabilitystatement-subscriptiontopic-canonical"
TOPIC_BASE = "https://coproduction.example.org/fhir/SubscriptionTopic/"
CONTENTS = ("empty", "id-only", "full-resource")
CHANNEL_STATUS = {"active": "active", "failing": "error", "disabled": "off"}

#: topic canonical -> what triggers it and what its notifications are about
TOPICS = {
    TOPIC_BASE + "budget-changes": {
        "title": "Personal health budget changes", "types": ["budget.*"], "service": "budgets",
        "resource": "Account", "description": "Any change of a person's budget: created, agreed, activated, "
        "a line item or an amount changed, reviewed, suspended, resumed, ended."},
    TOPIC_BASE + "care-plan-changes": {
        "title": "Care and support plan changes", "types": ["plan.*"], "service": "plans",
        "resource": "CarePlan", "description": "A plan created, agreed, revised, put on hold, resumed or closed."},
    TOPIC_BASE + "decision-changes": {
        "title": "Shared decision changes", "types": ["decision.*"], "service": "decisions",
        "resource": "Task", "description": "A shared decision opened, updated, recorded, deferred, followed "
        "up or superseded."},
}
FORBIDDEN_HEADERS = re.compile(r"^(host|content-length|content-type|connection|transfer-encoding|user-agent|"
                               r"webhook-.*)$", re.I)
HEADER_LINE = re.compile(r"^([!#$%&'*+.^_`|~0-9A-Za-z-]{1,64}):[ \t]*([^\r\n\x00]{1,1000})$")


def _extension_value(extensions, url: str, key: str):
    for ext in extensions if isinstance(extensions, list) else []:
        if isinstance(ext, dict) and ext.get("url") == url:
            return ext.get(key)
    return None


def read_subscription(body) -> tuple[dict, dict[str, list[str]]]:
    """(what to keep, errors by element) of a Subscription a client sent."""
    errors: dict[str, list[str]] = {}

    def bad(element: str, message: str) -> None:
        errors.setdefault(element, []).append(message)

    if not isinstance(body, dict) or body.get("resourceType") != "Subscription":
        return {}, {"Subscription": ["Send a Subscription resource (resourceType Subscription)."]}
    allowed = {"resourceType", "id", "meta", "status", "reason", "criteria", "_criteria", "channel", "end",
               "contact", "text"}
    for name in sorted(set(body) - allowed):
        bad(f"Subscription.{name}", "Not supported here: heartbeats, timeouts, max counts and errors are not "
                                    "offered (docs/fhir.md).")
    if body.get("status") not in ("requested", "active"):
        bad("Subscription.status", "A new subscription is requested (or active).")
    if not isinstance(body.get("reason"), str) or not body["reason"].strip():
        bad("Subscription.reason", "Say why the subscription is wanted (required in R4).")
    topic = body.get("criteria")
    if topic not in TOPICS:
        bad("Subscription.criteria", "Must be one of the topics: " + ", ".join(TOPICS) + ".")
    patient = None
    wanted = _extension_value((body.get("_criteria") or {}).get("extension"), FILTER_CRITERIA, "valueString")
    if wanted is not None and topic in TOPICS:  # an unknown topic is named on its own
        resource = TOPICS[topic]["resource"]
        match = re.fullmatch(rf"{resource}\?patient=Patient/([0-9]{{10}})", wanted or "")
        if match is None:
            bad("Subscription.criteria.extension", f"The one filter offered is {resource}?patient=Patient/<NHS number>.")
        else:
            patient = match.group(1)
    channel = body.get("channel")
    if not isinstance(channel, dict):
        bad("Subscription.channel", "A rest-hook channel is required.")
        channel = {}
    if channel.get("type") != "rest-hook":
        bad("Subscription.channel.type", "Only rest-hook channels are offered.")
    if not isinstance(channel.get("endpoint"), str) or not channel["endpoint"]:
        bad("Subscription.channel.endpoint", "The URL notifications are POSTed to.")
    if channel.get("payload", "application/fhir+json") != "application/fhir+json":
        bad("Subscription.channel.payload", "Notifications are application/fhir+json.")
    content = _extension_value((channel.get("_payload") or {}).get("extension"), PAYLOAD_CONTENT, "valueCode") or "id-only"
    if content not in CONTENTS:
        bad("Subscription.channel.payload.extension", f"The payload content is one of {', '.join(CONTENTS)}.")
    headers = channel.get("header") or []
    if not isinstance(headers, list) or len(headers) > 5:
        bad("Subscription.channel.header", "At most 5 header lines.")
        headers = []
    for n, line in enumerate(headers):
        match = HEADER_LINE.match(line) if isinstance(line, str) else None
        if match is None or FORBIDDEN_HEADERS.match(match.group(1)):
            bad(f"Subscription.channel.header[{n}]", "A header line 'Name: value', not one the gateway sets itself.")
    if set(channel) - {"type", "endpoint", "payload", "_payload", "header"}:
        bad("Subscription.channel", "Only type, endpoint, payload (with its content) and header are offered.")
    end = body.get("end")
    if end is not None and not isinstance(end, str):
        bad("Subscription.end", "An instant.")
    kept = {"topic": topic, "patient": patient, "content": content, "headers": list(headers),
            "reason": body.get("reason"), "end": end, "endpoint": channel.get("endpoint")}
    return kept, errors


def subscription_resource(row: dict, fhir: dict, base: str) -> dict:
    """The Subscription as the server holds it; its status is the delivery's (error: failing, off: stopped)."""
    topic = TOPICS[fhir["topic"]]
    channel = {"type": "rest-hook", "endpoint": row["url"], "payload": "application/fhir+json",
               "_payload": {"extension": [{"url": PAYLOAD_CONTENT, "valueCode": fhir["content"]}]}}
    if fhir.get("headers"):
        channel["header"] = fhir["headers"]
    out = {"resourceType": "Subscription", "id": row["id"],
           "meta": {"versionId": str(row["version"]), "profile": [SUBSCRIPTION_PROFILE]},
           "status": CHANNEL_STATUS.get(row["status"], "off"), "reason": fhir.get("reason") or topic["title"],
           "criteria": fhir["topic"], "channel": channel}
    if fhir.get("patient"):
        out["_criteria"] = {"extension": [{"url": FILTER_CRITERIA,
                                           "valueString": f"{topic['resource']}?patient=Patient/{fhir['patient']}"}]}
    if row.get("status_reason"):
        out["error"] = row["status_reason"]
    if fhir.get("end"):
        out["end"] = fhir["end"]
    return out


def status_parameters(sub_id: str, fhir: dict, status: str, kind: str, events_since_start: int,
                      events: list[dict] = (), base: str = "") -> dict:
    """The R4 SubscriptionStatus (Parameters): ``events`` are {number, timestamp, focus?}."""
    parameters = [
        {"name": "subscription", "valueReference": {"reference": f"{base}/Subscription/{sub_id}"}},
        {"name": "topic", "valueCanonical": fhir["topic"]},
        {"name": "status", "valueCode": CHANNEL_STATUS.get(status, "off")},
        {"name": "type", "valueCode": kind},
        {"name": "events-since-subscription-start", "valueString": str(events_since_start)},
    ]
    for event in events:
        part = [{"name": "event-number", "valueString": str(event["number"])},
                {"name": "timestamp", "valueInstant": event["timestamp"]}]
        if event.get("focus"):
            part.append({"name": "focus", "valueReference": {"reference": event["focus"]}})
        parameters.append({"name": "notification-event", "part": part})
    return {"resourceType": "Parameters", "id": str(uuid.uuid4()), "meta": {"profile": [STATUS_PROFILE]},
            "parameter": parameters}


def notification_bundle(status: dict, base: str, sub_id: str, resources: list[dict], timestamp: str,
                        operation: str = "$status") -> dict:
    """A history Bundle: the SubscriptionStatus first, then the focus resources (full-resource)."""
    entries = [{"fullUrl": f"urn:uuid:{status['id']}", "resource": status,
                "request": {"method": "GET", "url": f"{base}/Subscription/{sub_id}/{operation}"},
                "response": {"status": "200"}}]
    for r in resources:
        entries.append({"fullUrl": f"{base}/{r['resourceType']}/{r['id']}", "resource": r,
                        "request": {"method": "PUT" if r["meta"]["versionId"] != "1" else "POST",
                                    "url": f"{r['resourceType']}/{r['id']}"},
                        "response": {"status": "200" if r["meta"]["versionId"] != "1" else "201"}})
    return {"resourceType": "Bundle", "id": str(uuid.uuid4()), "meta": {"lastUpdated": timestamp},
            "type": "history", "timestamp": timestamp, "entry": entries}
