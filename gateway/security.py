"""Who is calling the gateway, and the one audit record of every access to a person's data.

Per request, in this order (gateway/app.py wires it): :func:`authenticate` (a bearer token on the
API, the session cookie on the pages) and the rate limit (gateway/limits.py); then the access
decision (gateway/policy/); the view; :func:`write_audit`, which records what the decision
settled, allowed or refused.
"""
from __future__ import annotations

from dataclasses import replace

from flask import current_app, g, request

from coproduction.auth import Caller, bearer_token, unauthorised
from coproduction.db import DB_UNAVAILABLE
from coproduction.http import Problem, ctx, problem_response
from coproduction.nhs_number import is_valid

from . import audit, limits, policy, tokens

PURPOSE_UNAUTHENTICATED = "unauthenticated"
#: the doors that take a bearer token; everything else is public or a web page
API = ("/v1/", "/fhir/")
SAFE_METHODS = ("GET", "HEAD")


def request_session():
    """The request's one transaction on the gateway's database. The caller's lookup, the decision,
    the reads of the person's data and the audit record share it, so a read costs one connection and
    one commit; :func:`write_audit` commits it, :func:`close_request_session` ends whatever is left.
    A GET or HEAD writes nothing but its audit record: its statements commit one by one
    (``Database.open(reading=True)``), the record with its INSERT, before the answer."""
    if "db_session" not in g:
        g.db_session = ctx().db.open(reading=request.method in SAFE_METHODS)
    return g.db_session


def close_request_session(_exc=None) -> None:
    """teardown_request: a request session nobody committed is rolled back and closed."""
    session = g.pop("db_session", None)
    if session is not None:
        try:
            session.close()
        except Exception:  # a broken connection is discarded by the pool; nothing to keep here
            pass


def _api_caller() -> tuple[Caller | None, Exception | None]:
    """The caller of the request's bearer token: an OAuth access token by its signature alone, a
    static development token only where ALLOW_STATIC_TOKENS is on (gateway/tokens.py)."""
    token = bearer_token(request.headers.get("Authorization", ""))
    if token is None:
        return None, unauthorised("A bearer token is required (Authorization: Bearer <token>).")
    try:
        found = tokens.bearer_caller(token, request_session)
    except Problem as problem:
        return None, problem
    purpose = request.headers.get("X-Purpose", "direct care").strip()[:200] or "direct care"
    return replace(found, purpose=purpose), None


def authenticate() -> None:
    """before_request: the caller, counted against its rate limit (per client, or per address when
    it is not authenticated); 401 for a bad token once it has been counted."""
    g.caller = None
    api = request.path.startswith(API)
    if request.path.startswith(policy.PUBLIC) or (not api and request.url_rule is None):
        return
    if api:
        caller, problem = _api_caller()
        if problem is not None and "Authorization" not in request.headers and _anonymous_route():
            problem = None  # a public route of the API (the FHIR CapabilityStatement): no caller needed
    else:  # a web page: the session cookie (gateway/pages/session.py)
        caller, problem = current_app.extensions["session_caller"](), None
    limits.check(caller)
    if problem is not None:
        raise problem
    g.caller = caller


def _anonymous_route() -> bool:
    rule, _ = policy.rule_for_request() if request.url_rule is not None else (None, None)
    return rule is not None and rule.anonymous


def caller() -> Caller:
    if g.get("caller") is None:
        raise unauthorised("A bearer token is required.")
    return g.caller


def _storable(text: str) -> str:
    """A NUL (a URL's %00) as the URL spells it: no PostgreSQL text column can hold U+0000."""
    return text.replace("\x00", "%00")


def _audited_subject() -> tuple[policy.Decision | None, str | None, bool]:
    """(decision, NHS number, whether the request touches personal data at all)."""
    decision = g.get("decision")
    if decision is not None:
        return decision, decision.subject, decision.rule.subject != policy.NONE
    if request.url_rule is None or request.path.startswith(policy.PUBLIC):
        return None, None, False
    rule, _ = policy.rule_for_request()
    if rule is None or rule.page:  # a page refused before a decision only redirected to sign-in
        return None, None, False
    nhs = (request.view_args or {}).get("nhs_number") if rule.subject == policy.PATH else None
    return None, nhs if nhs and is_valid(nhs) else None, rule.subject in policy.PERSONAL


def also_audit(nhs_numbers) -> None:
    """A population read shows these people's data: each gets a record of its own, written with the
    request's (gateway/changes.py, a course provider's roster)."""
    g.audit_people = sorted(set(g.get("audit_people", ())) | set(nhs_numbers))


def write_audit(response):
    """after_request: one record per request that touched (or tried to touch) a person's data."""
    decision, nhs, personal = _audited_subject()
    if not personal:
        return response
    who = g.get("caller")
    if who is None:  # nothing the caller chose goes into a person's access log: no query, no purpose
        resource, purpose = request.path, PURPOSE_UNAUTHENTICATED
    else:
        resource, purpose = request.full_path.rstrip("?"), who.purpose
    rule = decision.rule if decision else None

    def record(session) -> None:
        for person in [nhs, *g.get("audit_people", ())]:
            audit.record(session, caller=who, scope=rule.scope if rule else None, nhs_number=person,
                         action=request.method, resource=_storable(resource), purpose=_storable(purpose),
                         status=response.status_code, initiative=rule.initiative if rule else None,
                         relationship=decision.relationship if decision else None,
                         break_glass=bool(decision and decision.break_glass))
    db = ctx().db
    try:
        if db.is_postgres:  # in the request's transaction: its reads and its record, one commit
            session = request_session()
            if response.status_code >= 500:  # whatever failed is not kept; the record goes in alone
                session.rollback()
            record(session)
            session.commit()
        else:  # SQLite: a read transaction cannot take the write lock once another writer has
            close_request_session()  # committed, so the record gets a writing transaction of its own
            with db.session() as session:
                record(session)
    except DB_UNAVAILABLE:
        close_request_session()
        # an access that cannot be audited is not answered: the client retries later
        return problem_response(503, "Service Unavailable", "The audit trail is unavailable; retry shortly.",
                                headers={"Retry-After": "2"})
    return response
