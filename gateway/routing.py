"""Requests for the domain resources, forwarded to the owning service once the access decision
(gateway/policy/) has allowed them.

The gateway forwards exactly what it decided on (the body and query bytes it inspected) with a
short-lived signed token carrying the client's identity and scopes; the service checks it again.
What comes back is checked again too: a list drops every item the caller may not see (and says how
many in ``withheld``), a single resource must be the decided person's, and a create's resource is
indexed and establishes the creating organisation's relationship at once.
"""
from __future__ import annotations

import json
from urllib.parse import quote

import requests
from flask import Blueprint, Response, g, request

from coproduction.auth import issue_service_token
from coproduction.events import now
from coproduction.http import VALIDATE_ONLY, Problem, ctx, traceparent

from . import policy, subjects
from .security import also_audit, request_session

FORWARD_HEADERS = ("Content-Type", "If-Match", "If-None-Match", "Idempotency-Key", "X-Purpose")
RETURN_HEADERS = ("Content-Type", "ETag", "Location", "Retry-After", "Idempotent-Replayed", "Allow")

bp = Blueprint("routing", __name__)
_http = requests.Session()
_http.mount("http://", requests.adapters.HTTPAdapter(pool_connections=8, pool_maxsize=32))


def _call(service: str, path: str, decision: policy.Decision, body: bytes,
          validate_only: bool = False) -> requests.Response:
    headers = {h: request.headers[h] for h in FORWARD_HEADERS if h in request.headers}
    if validate_only:
        headers[VALIDATE_ONLY] = "1"
    # the query string exactly as it came and was decided on
    return call_service(service, request.method, path, decision.caller, body,
                        request.query_string.decode("latin-1"), headers)


def call_service(service: str, method: str, path: str, caller, body: bytes = b"", query: str = "",
                 headers: dict | None = None) -> requests.Response:
    """One request to a service with a signed service token for ``caller`` (503 if it does not answer)."""
    settings = ctx().settings
    token = issue_service_token(caller, service, settings.service_token_secret)
    headers = dict(headers or {}, Authorization=f"Bearer {token}", traceparent=traceparent())
    # the path re-encoded: a "?" or "%" in an id stays part of the path, as the client meant
    url = settings.service_urls[service] + quote(path, safe="/")
    if query:
        url += "?" + query
    try:
        return _http.request(method, url, data=body, headers=headers, timeout=15, allow_redirects=False)
    except requests.RequestException:
        raise Problem(503, "Service Unavailable", f"The {service} service is not answering; retry shortly.",
                      headers={"Retry-After": "5"}) from None


def every_bad_field(problem: Problem) -> Problem:
    """A create refused because its NHS number is missing or not valid, with every other bad field of
    its body named too: the owning service validates the body (``X-Validate-Only``: it can store
    nothing) and its field errors join the gateway's. If the service cannot say, the refusal stands."""
    service = problem.unsettled_create
    try:
        upstream = _call(service, request.path, policy.Decision(policy.Rule(None, policy.NONE), g.caller),
                         request.get_data(cache=True), validate_only=True)
    except Problem:
        return problem
    try:
        payload = upstream.json() if upstream.status_code == 422 else None
    except ValueError:
        payload = None
    if not isinstance(payload, dict) or not isinstance(payload.get("errors"), dict):
        return problem
    errors = {**payload["errors"], **problem.errors}
    return Problem(422, "Unprocessable Content", "Some fields are not valid: " + ", ".join(sorted(errors)),
                   errors=errors)


def _json(upstream: requests.Response):
    if not upstream.headers.get("Content-Type", "").startswith(("application/json", "application/fhir+json")):
        return None
    try:
        return upstream.json()
    except ValueError:
        return None


def _checked_items(decision: policy.Decision, payload: dict) -> dict:
    """The second line: a list keeps only the items the caller may see, and says how many it dropped."""
    items = payload.get("items")
    if not isinstance(items, list) or decision.rule.subject not in (policy.QUERY, policy.POPULATION):
        return payload  # a resource's own sub-items (line items, versions), or no personal data
    if decision.rule.subject == policy.POPULATION:
        people = [i.get("nhs_number") for i in items if isinstance(i, dict)]
        seen = policy.Visibility.of(request_session(), decision.caller, [p for p in people if p])
        kept = [i for i in items if isinstance(i, dict) and i.get("nhs_number")
                and seen.allows(i["nhs_number"], decision.rule.initiative)]
        also_audit(i["nhs_number"] for i in kept)  # the list spans people: each one shown is audited
    else:
        kept = [i for i in items if isinstance(i, dict) and i.get("nhs_number") == decision.subject]
    return dict(payload, items=kept, withheld=len(items) - len(kept))


def forward(service: str, path: str) -> Response:
    decision = policy.current()
    body = request.get_data(cache=True)  # the very bytes the decision inspected
    upstream = _call(service, path, decision, body)
    payload = _json(upstream)
    content = upstream.content
    if upstream.status_code < 400 and isinstance(payload, dict):
        if "items" in payload:
            content = json.dumps(_checked_items(decision, payload)).encode()
        elif decision.subject and isinstance(payload.get("nhs_number"), str) \
                and payload["nhs_number"] != decision.subject:  # never another person's record
            raise Problem(502, "Bad Gateway", "The service answered with a record of another person.")
        if decision.rule.action == "create" and upstream.status_code == 201 and isinstance(payload.get("id"), str):
            with ctx().db.session() as session:  # known, and held, from this moment
                subjects.record_created(session, service, payload["id"], decision.subject, decision.caller, now())
    resp = Response(content, status=upstream.status_code)
    for h in RETURN_HEADERS:
        if h in upstream.headers:
            resp.headers[h] = upstream.headers[h]
    return resp


def _route(segment: str, rest: str = ""):
    return forward(policy.FORWARDED[segment], f"/v1/{segment}" + (f"/{rest}" if rest else ""))


# OPTIONS is forwarded too, so the Allow a client reads is the service's, for that very resource
for _segment in policy.FORWARDED:
    bp.add_url_rule(f"/v1/{_segment}", f"route_{_segment}", lambda s=_segment: _route(s),
                    methods=["GET", "POST", "OPTIONS"])
    bp.add_url_rule(f"/v1/{_segment}/<path:rest>", f"route_{_segment}_rest",
                    lambda rest, s=_segment: _route(s, rest),
                    methods=["GET", "POST", "PATCH", "PUT", "DELETE", "OPTIONS"])
