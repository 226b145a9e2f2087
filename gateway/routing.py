"""Writes and reads of the domain resources, routed to the owning service after auth and scope.

The gateway forwards the call with a short-lived signed token carrying the client's identity and
scopes; the service checks it again. Each route prefix belongs to exactly one service, so an id
guessed from another resource type never reaches another service's data.
"""
from __future__ import annotations

import json
from urllib.parse import quote

import requests
from flask import Blueprint, Response, request

from coproduction.auth import issue_service_token
from coproduction.http import Problem, ctx, traceparent
from coproduction.nhs_number import is_valid

from .security import audit_person, need, request_session, withheld

#: first path segment under /v1 -> (service, scope prefix)
ROUTES = {
    "plans": ("plans", "plans"),
    "budgets": ("budgets", "budgets"),
    "decisions": ("decisions", "decisions"),
    "courses": ("groups", "groups"),
    "enrolments": ("groups", "groups"),
}
FORWARD_HEADERS = ("Content-Type", "If-Match", "If-None-Match", "Idempotency-Key", "X-Purpose")
RETURN_HEADERS = ("Content-Type", "ETag", "Location", "Retry-After", "Idempotent-Replayed", "Allow")
SECTION_OF_SERVICE = {"plans": "plans", "budgets": "budgets", "decisions": "decisions", "groups": "groups"}

bp = Blueprint("routing", __name__)
_http = requests.Session()
_http.mount("http://", requests.adapters.HTTPAdapter(pool_connections=8, pool_maxsize=32))


def forward(service: str, path: str, scope: str) -> Response:
    settings = ctx().settings
    who = need(scope)
    token = issue_service_token(who, service, settings.service_token_secret)
    headers = {h: request.headers[h] for h in FORWARD_HEADERS if h in request.headers}
    headers["Authorization"] = f"Bearer {token}"
    headers["traceparent"] = traceparent()
    nhs_hint = request.args.get("nhs_number")
    body = request.get_data()
    if body and request.is_json:
        try:
            parsed = json.loads(body)
            if isinstance(parsed, dict) and isinstance(parsed.get("nhs_number"), str):
                nhs_hint = parsed["nhs_number"]
        except ValueError:
            pass
    try:
        # the path re-encoded (a "?" or "%" in an id stays part of the path, as the client meant),
        # and the query string as it came (repeated parameters and all)
        url = settings.service_urls[service] + quote(path, safe="/")
        if request.query_string:
            url += "?" + request.query_string.decode("latin-1")
        upstream = _http.request(request.method, url, data=body, headers=headers, timeout=15,
                                 allow_redirects=False)
    except requests.RequestException:
        audit_person(nhs_hint)
        raise Problem(503, "Service Unavailable", f"The {service} service is not answering; retry shortly.",
                      headers={"Retry-After": "5"})
    nhs = nhs_hint
    payload = None
    if upstream.headers.get("Content-Type", "").startswith(("application/json", "application/fhir+json")):
        try:
            payload = upstream.json()
        except ValueError:
            payload = None
        if isinstance(payload, dict) and isinstance(payload.get("nhs_number"), str):
            nhs = payload["nhs_number"]
        elif isinstance(payload, dict) and payload.get("resourceType") == "Bundle":  # FHIR: the Patient's
            nhs = next((i.get("value") for e in payload.get("entry", [])  # NHS number identifier
                        if e.get("resource", {}).get("resourceType") == "Patient"
                        for i in e["resource"].get("identifier", [])
                        if i.get("system") == "https://fhir.nhs.uk/Id/nhs-number"), nhs)
    audit_person(nhs)
    if nhs and is_valid(nhs) and upstream.status_code < 400:
        if service in withheld(request_session(), nhs, who.role):
            raise Problem(403, "Forbidden", f"The person has chosen not to share their {service} with "
                          f"{who.role.replace('_', ' ')} organisations.")
    resp = Response(upstream.content, status=upstream.status_code)
    for h in RETURN_HEADERS:
        if h in upstream.headers:
            resp.headers[h] = upstream.headers[h]
    return resp


def _route(segment: str, rest: str = ""):
    if segment not in ROUTES:
        raise Problem(404, "Not Found", "No such resource.")
    service, scope_prefix = ROUTES[segment]
    scope = f"{scope_prefix}:{'read' if request.method in ('GET', 'HEAD', 'OPTIONS') else 'write'}"
    path = f"/v1/{segment}" + (f"/{rest}" if rest else "")
    return forward(service, path, scope)


# OPTIONS is forwarded too, so the Allow a client reads is the service's, for that very resource
for _segment in ROUTES:
    bp.add_url_rule(f"/v1/{_segment}", f"route_{_segment}", lambda s=_segment: _route(s),
                    methods=["GET", "POST", "OPTIONS"])
    bp.add_url_rule(f"/v1/{_segment}/<path:rest>", f"route_{_segment}_rest",
                    lambda rest, s=_segment: _route(s, rest),
                    methods=["GET", "POST", "PATCH", "PUT", "DELETE", "OPTIONS"])
