"""Who is calling the gateway, what they may do, and the audit of every access to a person."""
from __future__ import annotations

import re
from dataclasses import replace

from flask import current_app, g, request
from sqlalchemy import select

from coproduction.auth import Caller, unauthorised
from coproduction.db import DB_UNAVAILABLE
from coproduction.http import Problem, ctx, problem_response
from coproduction.nhs_number import is_valid

from . import audit, tokens
from .models import sharing

PUBLIC = ("/healthz", "/readyz", "/openapi.json", "/docs", "/metrics", "/static/", "/login", "/favicon")
PERSON_PATH = re.compile(r"^/v1/people/([^/]+)(/|$)")
#: routes that hold people's data: every request to them is audited, even when refused before the
#: person is known (then the record names the resource instead)
PERSONAL = ("/v1/people/", "/v1/plans", "/v1/budgets", "/v1/decisions", "/v1/enrolments", "/v1/changes")


def request_session():
    """The request's one transaction on the gateway's database. The caller's lookup, the reads of
    the person's data and the audit record share it, so a read costs one connection and one commit;
    :func:`write_audit` commits it, :func:`close_request_session` ends whatever is left."""
    if "db_session" not in g:
        g.db_session = ctx().db.open()
    return g.db_session


def close_request_session(_exc=None) -> None:
    """teardown_request: a request session nobody committed is rolled back and closed."""
    session = g.pop("db_session", None)
    if session is not None:
        try:
            session.close()
        except Exception:  # a broken connection is discarded by the pool; nothing to keep here
            pass


def authenticate() -> None:
    """before_request: every /v1 route needs a client's bearer token (pages use the session)."""
    g.caller = None
    path = request.path
    if path.startswith(PUBLIC) or path == "/":
        return
    if not path.startswith("/v1/"):
        return  # web pages check the session themselves
    header = request.headers.get("Authorization", "")
    if not header.startswith("Bearer "):
        raise unauthorised("A bearer token is required (Authorization: Bearer <token>).")
    # an OAuth access token by its signature alone; a static development token only if allowed
    caller = tokens.bearer_caller(header[7:].strip(), request_session)
    purpose = request.headers.get("X-Purpose", "direct care").strip()[:200] or "direct care"
    g.caller = replace(caller, purpose=purpose)


def caller() -> Caller:
    if g.get("caller") is None:
        raise unauthorised("A bearer token is required.")
    return g.caller


def need(scope: str) -> Caller:
    who = caller()
    g.audit_scope = scope
    if not who.has(scope):
        raise Problem(403, "Forbidden", f"This needs the scope {scope}.")
    return who


def audit_person(nhs_number: str | None, scope: str | None = None) -> None:
    """Mark this request as touching a person's data: one audit record is written after it."""
    if nhs_number and is_valid(nhs_number):
        g.audit_nhs = nhs_number
    if scope:
        g.audit_scope = scope


def withheld(session, nhs_number: str, role: str) -> set[str]:
    prefs = session.execute(select(sharing.c.withhold).where(sharing.c.nhs_number == nhs_number)
                            ).scalar_one_or_none()
    return hidden_from(prefs, role)


def hidden_from(prefs: dict | None, role: str) -> set[str]:
    """The services a person's sharing preferences withhold from a role (admins see everything)."""
    if not prefs or role == "admin":
        return set()
    return set(prefs.get(role, []))


def _person_named_by_request() -> str | None:
    """The NHS number a request names in its path, query or JSON body, if any."""
    match = PERSON_PATH.match(request.path)
    if match and is_valid(match.group(1)):
        return match.group(1)
    candidate = request.args.get("nhs_number")
    small = (request.content_length or 0) <= current_app.config["MAX_CONTENT_LENGTH"]
    if candidate is None and request.is_json and request.content_length and small:
        try:
            body = request.get_json(silent=True)
        except RecursionError:  # nested too deep to parse (the request itself was refused with a 400)
            body = None
        if isinstance(body, dict):
            candidate = body.get("nhs_number")
    return candidate if isinstance(candidate, str) and is_valid(candidate) else None


def _storable(text: str) -> str:
    """A NUL (a URL's %00) as the URL spells it: no PostgreSQL text column can hold U+0000."""
    return text.replace("\x00", "%00")


def write_audit(response):
    """after_request: one record per request that touched a person's data, allowed or refused."""
    nhs = g.get("audit_nhs")
    if nhs is None:
        nhs = _person_named_by_request()
    if nhs is None and not request.path.startswith(PERSONAL):
        return response
    who = g.get("caller")

    def record(session) -> None:
        audit.record(session, caller=who, scope=g.get("audit_scope"), nhs_number=nhs,
                     action=request.method, resource=_storable(request.full_path.rstrip("?")),
                     purpose=_storable(getattr(who, "purpose", None)
                                       or request.headers.get("X-Purpose", "direct care")),
                     status=response.status_code)
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
