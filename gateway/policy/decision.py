"""The one decision per request, made before anything is forwarded or read: the subject settled by
the route's rule (gateway/policy/rules.py), then the caller's scope, the person's standing (a care
relationship, their sharing preferences) and the decision kept in ``g.decision``."""
from __future__ import annotations

import functools
import json
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

from flask import current_app, g, request
from sqlalchemy import String, Text, bindparam, cast, func, literal, or_, select

from coproduction import jsonio
from coproduction.auth import Caller, unauthorised
from coproduction.db import Prepared
from coproduction.http import Problem
from coproduction.nhs_number import is_valid

from .. import subjects
from ..models import care_relationships, portfolios, sharing, subjects as subjects_table
from .rules import (BODY, EMERGENCY, NO_BODY, PATH, PERSONAL, PUBLIC, QUERY, SHAREABLE, Rule, may_read,
                    rule_for_request)
from .visibility import hidden_from


@dataclass
class Decision:
    rule: Rule
    caller: Caller | None
    subject: str | None = None
    relationship: str | None = None   # the kind of care relationship the access rests on
    withheld: frozenset[str] = frozenset()
    first_record: bool = False        # a create that will establish the caller's relationship
    resource_id: str | None = None
    document_text: str | None = None  # the person's portfolio document as stored, where the rule reads it
    document_updated_at: datetime | None = None
    records: frozenset[tuple[str, str]] | None = None  # the person's (service, id) records, read with it
    changes: dict | None = None       # their recent changes (portfolio.recent_changes), where the rule shows them
    changes_since: datetime | None = None

    @functools.cached_property
    def document(self) -> dict | None:
        """The document, parsed where a route needs more than its stored text."""
        return None if self.document_text is None else jsonio.loads(self.document_text)

    @property
    def break_glass(self) -> bool:
        return self.relationship == EMERGENCY

    @property
    def unseen(self) -> frozenset[str]:
        """The initiatives left out of what the caller is shown: withheld by the person's preferences,
        or beyond the read scopes of the caller (a role sees an initiative it may read, and no other)."""
        return self.withheld | self._unreadable

    @functools.cached_property
    def _unreadable(self) -> frozenset[str]:  # the caller, and so its scopes, is fixed with the decision
        return frozenset(i for i in SHAREABLE if self.caller is None or not may_read(self.caller, i))


# -- settling the subject -----------------------------------------------------------------------
def unprocessable(field_name: str, message: str) -> Problem:
    return Problem(422, "Unprocessable Content", f"Some fields are not valid: {field_name}",
                   errors={field_name: [message]})


def _refuse_duplicates(pairs):
    keys = [k for k, _ in pairs]
    if len(keys) != len(set(keys)):
        raise Problem(400, "Bad Request", "The JSON body names a member more than once: "
                      + ", ".join(sorted({k for k in keys if keys.count(k) > 1})) + ".")
    return dict(pairs)


def body_json():
    """The request's JSON body, parsed once, refusing duplicate member names (two parsers may pick
    different ones; the bytes forwarded are exactly these)."""
    if "body_json" not in g:
        data = request.get_data(cache=True)
        try:
            g.body_json = json.loads(data, object_pairs_hook=_refuse_duplicates) if data else None
        except (ValueError, RecursionError):
            raise Problem(400, "Bad Request", "The body is not valid JSON.") from None
    return g.body_json


def _subject(rule: Rule, resource_id: str | None, session) -> str:
    if rule.subject == PATH:
        nhs = request.view_args.get("nhs_number", "")
        if not is_valid(nhs):
            raise unprocessable("nhs_number", "Not a valid NHS number.")
        return nhs
    if rule.fhir and rule.subject in (QUERY, BODY):
        from ..fhir import subject as fhir_subject
        return (fhir_subject.of_search(rule.params) if rule.subject == QUERY else fhir_subject.of_create())
    if rule.subject == QUERY:
        values = request.args.getlist("nhs_number")
        if len(values) != 1:
            raise unprocessable("nhs_number", "Give the person's NHS number (nhs_number) once.")
        if not is_valid(values[0]):
            raise unprocessable("nhs_number", "Not a valid NHS number.")
        return values[0]
    if rule.subject == BODY:
        if not request.is_json:
            raise Problem(415, "Unsupported Media Type", "A create is sent as application/json.")
        body = body_json()
        nhs = body.get("nhs_number") if isinstance(body, dict) else None
        if not isinstance(nhs, str) or not is_valid(nhs):
            problem = unprocessable("nhs_number", "Give the person's valid NHS number (nhs_number).")
            problem.unsettled_create = rule.service  # the service may name the body's other bad fields
            raise problem
        return nhs
    nhs = subjects.person_of(session, rule.service, resource_id)  # RESOURCE
    if nhs is None:
        raise Problem(404, "Not Found", "No such resource.")
    return nhs


# -- the person's standing: relationship, preferences, records ------------------------------------
def active_relationship(nhs_number, org, at):
    """A SQL expression: the kind of the caller's active relationship, a held or declared one before
    emergency access (so an access is flagged as break glass only when nothing else allows it)."""
    r = care_relationships
    return (select(r.c.kind).where(r.c.nhs_number == nhs_number, r.c.org == org, r.c.ended_at.is_(None),
                                   or_(r.c.expires_at.is_(None), r.c.expires_at > at))
            .order_by(r.c.kind == EMERGENCY, r.c.started_at).limit(1).scalar_subquery())


SUBJECT = bindparam("subject", type_=String)


def _standing_statement(with_document: bool, with_changes: bool = False):
    """The person's standing in one statement: their sharing preferences, the caller's relationship
    and, for a rule that shows them, their portfolio document, the ids it is scrubbed of
    (visibility.scrub) and their recent changes (gateway/portfolio.py). Built once, run with bound
    parameters (``subject``, ``org``, ``at``), so a request neither builds nor compiles it."""
    columns = [select(sharing.c.withhold).where(sharing.c.nhs_number == SUBJECT).scalar_subquery().label("withhold"),
               active_relationship(SUBJECT, bindparam("org", type_=String), bindparam("at")).label("relationship")]
    if not with_document:
        return select(*columns)
    p, r = portfolios, subjects_table
    columns += [cast(p.c.document, Text).label("document"), p.c.updated_at,
                select(func.aggregate_strings(r.c.service + RECORD_SEPARATOR + r.c.resource_id, RECORDS_SEPARATOR))
                .where(r.c.nhs_number == SUBJECT).scalar_subquery().label("records")]
    if with_changes:
        columns.append(p.c.recent_changes)
    one_row = select(literal(1).label("one")).subquery("one_row")  # a row even when there is no portfolio
    return select(*columns).select_from(one_row.outerjoin(p, p.c.nhs_number == SUBJECT))


RECORD_SEPARATOR, RECORDS_SEPARATOR = " ", "\n"  # neither is in a service's name or a resource id


def _records(aggregated: str | None) -> frozenset[tuple[str, str]]:
    return frozenset(tuple(item.split(RECORD_SEPARATOR, 1)) for item in (aggregated or "").split(RECORDS_SEPARATOR) if item)


STANDING = {(document, changes): Prepared(_standing_statement(document, changes))
            for document in (False, True) for changes in (False, True) if document or not changes}


def no_relationship(caller: Caller, nhs: str) -> Problem:
    how = {
        "hospital": "declare the admission first: POST /v1/people/{nhs}/relationships with "
                    '{"kind": "admission", "encounter_id": ..., "reason": ...}',
        "gp": "a GP practice has one with the people whose care plan it holds (it creates their first plan)",
        "social_care": "a social care organisation has one with the people whose budget it holds "
                       "(it creates their first budget)",
        "community": "a course provider has one with the people who have a place on its courses "
                     "(it enrols them)",
    }.get(caller.role, "ask the person's GP practice")
    emergency = ("; in an emergency, emergency access (POST /v1/people/{nhs}/relationships with "
                 '{"kind": "emergency", "reason": ...}) is time-limited, flagged in the audit and '
                 "reviewed by the person's GP practice") if caller.role in ("hospital", "gp", "social_care") else ""
    return Problem(403, "Forbidden", f"Your organisation ({caller.org}) has no care relationship with this "
                   f"person: {how}{emergency}.".replace("{nhs}", nhs))


def withheld_problem(initiative: str, role: str) -> Problem:
    return Problem(403, "Forbidden", f"The person has chosen not to share their {initiative} with "
                   f"{role.replace('_', ' ')} organisations.")


def decide(rule: Rule, caller: Caller, resource_id: str | None, session) -> Decision:
    decision = Decision(rule, caller, resource_id=resource_id)
    if rule.subject == PATH:  # the route names the person: the audit names them even when refused
        decision.subject = _subject(rule, resource_id, session)
    if rule.scope and not caller.has(rule.scope):
        g.decision = decision
        raise Problem(403, "Forbidden", f"This needs the scope {rule.scope}.")
    if rule.subject not in PERSONAL:
        return decision
    decision.subject = decision.subject or _subject(rule, resource_id, session)
    if rule.subject == BODY:  # what the service stores is what was decided on
        g.decision = decision
    if rule.action == "relate":  # declaring or ending one's own relationship needs none before
        return decision
    at = datetime.now(timezone.utc)
    params = {"subject": decision.subject, "org": caller.org, "at": at}
    shape = (rule.document, bool(rule.changes_days))
    if rule.changes_days:  # the window the view takes of the recent changes read with the document
        decision.changes_since = at - timedelta(days=rule.changes_days)
    if rule.action == "create":
        standing = session.execute(STANDING[shape].statement.add_columns(
            subjects.holds_any(rule.service, SUBJECT).label("has_record")), params).one()
    else:
        standing = STANDING[shape].run(session, params)
    if rule.document:
        decision.document_text, decision.document_updated_at = standing.document, standing.updated_at
        decision.records = _records(standing.records)
    if rule.changes_days:
        decision.changes = standing.recent_changes
    decision.withheld = frozenset(hidden_from(standing.withhold, caller.role))
    if caller.role == "admin":
        decision.relationship = "admin"
    elif standing.relationship:
        decision.relationship = standing.relationship
    elif (rule.action == "create" and not standing.has_record
          and subjects.held_relationship(decision.subject, rule.service, caller.org, caller.role, at, "create")):
        decision.first_record = True
    else:
        g.decision = decision
        raise no_relationship(caller, decision.subject)
    if rule.initiative in decision.withheld:
        g.decision = decision
        raise withheld_problem(rule.initiative, caller.role)
    return decision


def enforce():
    """before_request, after authentication: decide, or refuse before anything is forwarded or read."""
    if request.path.startswith(PUBLIC) or request.url_rule is None:
        return None  # public, or answered by Flask itself (404, 405)
    rule, resource_id = rule_for_request()
    try:
        if rule is None:  # deny by default: a route nobody wrote a rule for is never served
            raise Problem(403, "Forbidden", "No access rule covers this route.")
        caller = g.get("caller")
        if rule.anonymous:
            return None
        if caller is None:
            raise unauthorised("A bearer token is required (Authorization: Bearer <token>).")
        if request.method in NO_BODY and _sent_a_body():
            raise Problem(400, "Bad Request", f"A {request.method} request has no body; send none.")
        from ..security import request_session
        g.decision = decide(rule, caller, resource_id, request_session())
    except Problem as problem:
        if rule is not None and rule.page:  # the pages answer in HTML: a sign-in or an error page
            return current_app.extensions["page_refusal"](problem)
        if getattr(problem, "unsettled_create", None):  # refused; only its other bad fields are asked for
            raise current_app.extensions["every_bad_field"](problem) from None
        raise
    return None


def _sent_a_body() -> bool:
    """Whether the request carries a body; one with neither a length nor a transfer coding has none
    (RFC 9112 §6.3), and is not read to find out."""
    if not request.content_length and "Transfer-Encoding" not in request.headers:
        return False
    return bool(request.get_data(cache=True))


def current() -> Decision:
    return g.decision

