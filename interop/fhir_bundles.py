"""FHIR R4 Bundles (searchset, history, document) and OperationOutcomes, as plain JSON dicts."""
from __future__ import annotations

import html
import uuid

#: RFC 9110 status -> the OperationOutcome issue code that says the same
ISSUE_CODE = {400: "invalid", 401: "login", 403: "forbidden", 404: "not-found", 405: "not-supported",
              406: "not-supported", 409: "conflict", 410: "deleted", 412: "conflict", 413: "too-costly",
              415: "not-supported", 422: "processing", 428: "required", 429: "throttled", 500: "exception",
              502: "transient", 503: "transient"}


def operation_outcome(status: int, detail: str, errors: dict[str, list[str]] | None = None) -> dict:
    """One issue per bad element (its FHIRPath ``expression``), or one issue saying ``detail``."""
    code = ISSUE_CODE.get(status, "processing" if status < 500 else "exception")
    severity = "error" if status >= 400 else "information"
    issues = [{"severity": severity, "code": "invalid" if status in (400, 422) else code,
               "diagnostics": message, "expression": [element]}
              for element, messages in (errors or {}).items() for message in messages]
    if not issues:
        issues = [{"severity": severity, "code": code, "diagnostics": detail}]
    return {"resourceType": "OperationOutcome", "id": str(uuid.uuid4()), "issue": issues}


def suppressed(what: list[str]) -> dict:
    """The OperationOutcome a Bundle carries when parts of the record are left out for the caller."""
    return {"resourceType": "OperationOutcome", "id": str(uuid.uuid5(uuid.NAMESPACE_URL, "withheld:" + ",".join(what))),
            "issue": [{"severity": "information", "code": "suppressed",
                       "diagnostics": f"Left out for this client: {', '.join(what)} (the person's sharing "
                                      "preferences, or the scopes this client was granted)."}]}


def full_url(base: str, resource: dict) -> str:
    return f"{base}/{resource['resourceType']}/{resource['id']}"


def searchset(base: str, resources: list[dict], *, timestamp: str, self_url: str, next_url: str | None = None,
              total: int | None = None, outcomes: list[dict] = ()) -> dict:
    entries = [{"fullUrl": full_url(base, r), "resource": r, "search": {"mode": "match"}} for r in resources]
    entries += [{"fullUrl": f"urn:uuid:{o['id']}", "resource": o, "search": {"mode": "outcome"}} for o in outcomes]
    links = [{"relation": "self", "url": self_url}]
    if next_url:
        links.append({"relation": "next", "url": next_url})
    out = {"resourceType": "Bundle", "id": str(uuid.uuid4()), "meta": {"lastUpdated": timestamp},
           "type": "searchset", "timestamp": timestamp, "link": links, "entry": entries}
    if total is not None:
        out["total"] = total
    return out


def history(base: str, versions: list[dict], *, timestamp: str, self_url: str, next_url: str | None = None) -> dict:
    """A history Bundle of a resource's versions, newest first; each entry says how it came about."""
    entries = []
    for r in versions:
        created = r["meta"]["versionId"] == "1"
        entries.append({"fullUrl": full_url(base, r), "resource": r,
                        "request": {"method": "POST" if created else "PUT",
                                    "url": r["resourceType"] if created else f"{r['resourceType']}/{r['id']}"},
                        "response": {"status": "201 Created" if created else "200 OK",
                                     "etag": f'W/"{r["meta"]["versionId"]}"',
                                     **({"lastModified": r["meta"]["lastUpdated"]} if r["meta"].get("lastUpdated") else {})}})
    links = [{"relation": "self", "url": self_url}] + ([{"relation": "next", "url": next_url}] if next_url else [])
    return {"resourceType": "Bundle", "id": str(uuid.uuid4()), "meta": {"lastUpdated": timestamp},
            "type": "history", "timestamp": timestamp, "link": links, "entry": entries}


def narrative(title: str, lines: list[str]) -> dict:
    items = "".join(f"<li>{html.escape(line)}</li>" for line in lines)
    return {"status": "generated",
            "div": f'<div xmlns="http://www.w3.org/1999/xhtml"><p>{html.escape(title)}</p><ol>{items}</ol></div>'}


def document(base: str, composition: dict, resources: list[dict], *, timestamp: str, identifier: str) -> dict:
    """A document Bundle: the Composition first, then every resource its sections name."""
    entries = [{"fullUrl": full_url(base, composition), "resource": composition}]
    entries += [{"fullUrl": full_url(base, r) if r["resourceType"] != "OperationOutcome" else f"urn:uuid:{r['id']}",
                 "resource": r} for r in resources]
    return {"resourceType": "Bundle", "id": str(uuid.uuid4()), "meta": {"lastUpdated": timestamp},
            "identifier": {"system": "urn:ietf:rfc:3986", "value": f"urn:uuid:{identifier}"},
            "type": "document", "timestamp": timestamp, "entry": entries}
