"""The access decision: one per request, made before anything is forwarded or read.

Every route the gateway serves or forwards has a rule (below): the scope it needs, and where its
subject (the person) comes from. The subject is never guessed from whichever part of a request
holds an NHS number:

- ``PATH``: the route's own ``{nhs_number}``;
- ``RESOURCE``: the id in the path, looked up in the resource → person index (gateway/subjects.py);
- ``BODY``: a create: the ``nhs_number`` of the JSON body, exactly the bytes that are forwarded;
- ``QUERY``: a list filtered by a person: its one ``nhs_number`` parameter;
- ``NONE``: no personal data (courses, the site report's counts, the caller's own subscriptions);
- ``POPULATION``: lists across people that have a scope of their own; each item is then checked
  by :class:`Visibility`, and what is dropped is counted in the answer's ``withheld``.

For a person, the caller's organisation must have a care relationship with them (admins excepted;
creating the person's first record in an initiative establishes one), then the person's sharing
preferences must not withhold the initiative from the caller's role. A refusal is answered before
anything is forwarded, so a refused write leaves nothing behind. The decision is kept in
``g.decision``: the views read it, and the audit record names exactly its subject.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime, timezone

from flask import current_app, g, request
from sqlalchemy import or_, select

from coproduction.auth import Caller, unauthorised
from coproduction.http import Problem
from coproduction.nhs_number import is_valid

from . import subjects
from .models import care_relationships, sharing
from .models import subjects as subjects_table

PATH, RESOURCE, BODY, QUERY, NONE, POPULATION = "path", "resource", "body", "query", "none", "population"
PERSONAL = (PATH, RESOURCE, BODY, QUERY)
SHAREABLE = ("plans", "budgets", "decisions", "groups")
NO_BODY = ("GET", "HEAD", "OPTIONS", "DELETE")
EMERGENCY = "emergency"


@dataclass(frozen=True)
class Rule:
    scope: str | None
    subject: str
    initiative: str | None = None  # plans | budgets | decisions | groups | portfolio
    service: str | None = None     # whose resource index a RESOURCE or BODY subject is settled in
    action: str = "read"           # read | write | create | relate (declaring or ending one's own relationship)
    page: bool = False             # a web page: refusals are rendered, not answered as problem+json
    anonymous: bool = False        # served without a caller (still counted per address)
    fhir: bool = False             # the FHIR door: QUERY from FHIR search parameters, BODY from CarePlan.subject
    params: tuple[str, ...] = ("nhs_number",)  # QUERY: the query parameters that may name the person


@dataclass
class Decision:
    rule: Rule
    caller: Caller | None
    subject: str | None = None
    relationship: str | None = None   # the kind of care relationship the access rests on
    withheld: frozenset[str] = frozenset()
    first_record: bool = False        # a create that will establish the caller's relationship
    resource_id: str | None = None

    @property
    def break_glass(self) -> bool:
        return self.relationship == EMERGENCY

    @property
    def unseen(self) -> frozenset[str]:
        """The initiatives left out of what the caller is shown: withheld by the person's preferences,
        or beyond the read scopes of the caller (a role sees an initiative it may read, and no other)."""
        unreadable = {i for i in SHAREABLE if self.caller is None or not may_read(self.caller, i)}
        return self.withheld | unreadable


#: the SMART scope that reads an initiative on the FHIR door (coproduction/auth.py SMART_GRANTS)
SMART_READS = {"plans": "system/CarePlan.r", "budgets": "system/Account.r", "decisions": "system/Task.r",
               "groups": "system/EpisodeOfCare.r"}


def may_read(caller: Caller, initiative: str) -> bool:
    """Whether the caller's scopes read an initiative: ours (``plans:read``) or its SMART scope."""
    return caller.has(f"{initiative}:read") or (initiative in SMART_READS and caller.has(SMART_READS[initiative]))


def _person(scope: str, initiative: str = "portfolio", action: str = "read", page: bool = False) -> Rule:
    return Rule(scope, PATH, initiative, action=action, page=page)


#: the gateway's own routes: (method, route as Flask writes it) -> rule. HEAD is decided as GET.
PEOPLE = "/v1/people/<nhs_number>"
RULES: dict[tuple[str, str], Rule] = {
    ("GET", f"{PEOPLE}/portfolio"): _person("portfolio:read"),
    ("GET", f"{PEOPLE}/priorities"): _person("portfolio:read"),
    ("GET", f"{PEOPLE}/admission-summary"): _person("portfolio:read"),
    ("GET", f"{PEOPLE}/fhir"): _person("portfolio:read"),
    ("GET", f"{PEOPLE}/changes"): _person("portfolio:read"),
    ("GET", f"{PEOPLE}/access-log"): _person("portfolio:read"),
    ("GET", f"{PEOPLE}/sharing"): _person("portfolio:read"),
    ("GET", f"{PEOPLE}/sharing/history"): _person("portfolio:read"),
    ("PUT", f"{PEOPLE}/sharing"): _person("portfolio:read", action="write"),
    ("GET", f"{PEOPLE}/relationships"): _person("portfolio:read"),
    ("POST", f"{PEOPLE}/relationships"): _person("portfolio:read", action="relate"),
    ("DELETE", f"{PEOPLE}/relationships/<relationship_id>"): _person("portfolio:read", action="relate"),
    ("GET", "/v1/relationships/review"): Rule("portfolio:read", POPULATION),
    ("GET", "/v1/changes"): Rule("portfolio:read", POPULATION),
    ("GET", "/v1/audit"): Rule("audit:read", POPULATION),
    ("GET", "/v1/audit/tree-head"): Rule(None, NONE),  # audit:read or portfolio:read: the view decides
    ("GET", "/v1/audit/proof/inclusion"): Rule(None, NONE),  # the same, and which leaves
    ("GET", "/v1/audit/proof/consistency"): Rule("audit:read", NONE),
    ("GET", "/v1/audit/leaf-hashes"): Rule("audit:read", NONE),
    ("GET", "/v1/reports/coproduction"): Rule("portfolio:read", NONE),
    ("POST", "/v1/subscriptions"): Rule("subscriptions:manage", NONE),
    ("GET", "/v1/subscriptions"): Rule("subscriptions:manage", NONE),
    ("GET", "/v1/subscriptions/<sub_id>"): Rule("subscriptions:manage", NONE),
    ("DELETE", "/v1/subscriptions/<sub_id>"): Rule("subscriptions:manage", NONE),
    ("GET", "/v1/subscriptions/<sub_id>/deliveries"): Rule("subscriptions:manage", POPULATION),
    ("POST", "/v1/subscriptions/<sub_id>/replay"): Rule("subscriptions:manage", NONE),
    # the OAuth door: no caller yet, each request counted against its address's rate limit
    ("POST", "/oauth2/token"): Rule(None, NONE, anonymous=True),
    ("GET", "/.well-known/smart-configuration"): Rule(None, NONE, anonymous=True),
    ("GET", "/.well-known/oauth-authorization-server"): Rule(None, NONE, anonymous=True),
    ("GET", "/.well-known/jwks.json"): Rule(None, NONE, anonymous=True),
    # web pages (signed in with the session cookie)
    ("GET", "/login"): Rule(None, NONE, page=True, anonymous=True),
    ("POST", "/login"): Rule(None, NONE, page=True, anonymous=True),
    ("POST", "/logout"): Rule(None, NONE, page=True, anonymous=True),
    ("GET", "/"): Rule(None, NONE, page=True),
    ("GET", "/people"): Rule(None, NONE, page=True),
    ("GET", "/people/<nhs_number>"): _person("portfolio:read", page=True),
    ("GET", "/reports/coproduction"): Rule("portfolio:read", NONE, page=True),
}

# -- the FHIR door (gateway/fhir/): the same decision, with SMART system scopes -------------------
FHIR = "/fhir/R4"
#: FHIR search parameters that name the person: how each is written
PATIENT_SEARCH = ("patient", "subject", "subject:identifier", "patient.identifier")


def _fhir(scope: str, subject: str, initiative: str | None = None, service: str | None = None,
          action: str = "read", params: tuple[str, ...] = PATIENT_SEARCH, anonymous: bool = False) -> Rule:
    return Rule(scope, subject, initiative, service, action=action, fhir=True, params=params, anonymous=anonymous)


def _fhir_reads(resource: str, initiative: str, service: str, path: str) -> dict:
    """read, vread and _history of a resource settled in the resource index."""
    rule = _fhir(f"system/{resource}.r", RESOURCE, initiative, service)
    return {("GET", f"{FHIR}/{resource}/{path}"): rule, ("GET", f"{FHIR}/{resource}/{path}/_history"): rule,
            ("GET", f"{FHIR}/{resource}/{path}/_history/<version_id>"): rule}


RULES.update({
    ("GET", f"{FHIR}/metadata"): _fhir(None, NONE, anonymous=True),
    ("GET", f"{FHIR}/Patient"): _fhir("system/Patient.s", QUERY, "portfolio", params=("identifier",)),
    ("GET", f"{FHIR}/Patient/<nhs_number>"): _fhir("system/Patient.r", PATH, "portfolio"),
    ("GET", f"{FHIR}/Patient/<nhs_number>/$everything"): _fhir("system/Patient.r", PATH, "portfolio"),
    ("GET", f"{FHIR}/Patient/<nhs_number>/$summary"): _fhir("system/Patient.r", PATH, "portfolio"),
    ("GET", f"{FHIR}/CarePlan"): _fhir("system/CarePlan.s", QUERY, "plans", "plans"),
    ("POST", f"{FHIR}/CarePlan"): _fhir("system/CarePlan.c", BODY, "plans", "plans", action="create"),
    ("PUT", f"{FHIR}/CarePlan/<resource_id>"): _fhir("system/CarePlan.u", RESOURCE, "plans", "plans", action="write"),
    **_fhir_reads("CarePlan", "plans", "plans", "<resource_id>"),
    ("GET", f"{FHIR}/Goal"): _fhir("system/Goal.s", QUERY, "plans", "plans"),
    **_fhir_reads("Goal", "plans", "plans", "<part_id>"),
    **_fhir_reads("Observation", "plans", "plans", "<part_id>"),
    **_fhir_reads("Account", "budgets", "budgets", "<resource_id>"),
    **_fhir_reads("Task", "decisions", "decisions", "<resource_id>"),
    **_fhir_reads("EpisodeOfCare", "groups", "groups", "<resource_id>"),
    # a client's own subscriptions: no personal data, but $events lists people's events, each checked
    ("POST", f"{FHIR}/Subscription"): _fhir("system/Subscription.c", NONE),
    ("GET", f"{FHIR}/Subscription"): _fhir("system/Subscription.s", NONE),
    ("GET", f"{FHIR}/Subscription/<sub_id>"): _fhir("system/Subscription.r", NONE),
    ("DELETE", f"{FHIR}/Subscription/<sub_id>"): _fhir("system/Subscription.d", NONE),
    ("GET", f"{FHIR}/Subscription/<sub_id>/$status"): _fhir("system/Subscription.r", NONE),
    ("GET", f"{FHIR}/Subscription/<sub_id>/$events"): _fhir("system/Subscription.r", POPULATION),
})


def _fhir_resource_id(rule: Rule) -> str | None:
    """The index id a FHIR route names: the resource's own, or for a Goal or an Observation its plan's."""
    args = request.view_args or {}
    if "part_id" in args:
        from interop.fhir_plans import split_part_id
        parts = split_part_id(args["part_id"])
        return parts[0] if parts else None
    return args.get("resource_id")


#: routes that need no caller at all
PUBLIC = ("/healthz", "/readyz", "/metrics", "/openapi.json", "/docs", "/static/", "/v1/audit/public-key")

#: first path segment under /v1 of a route forwarded to a service -> that service
FORWARDED = {"plans": "plans", "budgets": "budgets", "decisions": "decisions", "courses": "groups",
             "enrolments": "groups"}
ROSTER_SCOPE = "groups:roster"


def forwarded_rule(segment: str, rest: str, method: str) -> tuple[Rule, str | None]:
    """The rule of a request forwarded to a service, and the resource id it names (if any)."""
    service = FORWARDED[segment]
    read = method in ("GET", "HEAD", "OPTIONS")
    scope = f"{service}:{'read' if read else 'write'}"
    parts = rest.split("/") if rest else []
    if segment == "courses":  # courses themselves hold no personal data; a place on one does
        if len(parts) == 2 and parts[1] == "enrolments" and method == "POST":
            return Rule(scope, BODY, service, service, action="create"), None
        return Rule(scope, NONE), None
    if parts:
        return Rule(scope, RESOURCE, service, service, action="read" if read else "write"), parts[0]
    if method == "OPTIONS":
        return Rule(scope, NONE), None
    if method == "POST":
        return Rule(scope, BODY, service, service, action="create"), None
    if segment == "enrolments" and "nhs_number" not in request.args and "course_id" in request.args:
        return Rule(ROSTER_SCOPE, POPULATION, service), None  # a course provider's roster
    return Rule(scope, QUERY, service), None


def rule_for_request() -> tuple[Rule | None, str | None]:
    rule = request.url_rule
    if rule is None:
        return None, None
    method = "GET" if request.method in ("HEAD", "OPTIONS") else request.method
    if rule.endpoint.startswith("routing."):
        segment = rule.rule.split("/")[2]
        return forwarded_rule(segment, (request.view_args or {}).get("rest", ""), request.method)
    if request.method == "OPTIONS":
        return Rule(None, NONE), None  # answered by Flask itself: the route's Allow, no data
    found = RULES.get((method, rule.rule))
    return found, (_fhir_resource_id(found) if found is not None and found.fhir else None)


# -- settling the subject -----------------------------------------------------------------------
def _unprocessable(field_name: str, message: str) -> Problem:
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
            raise _unprocessable("nhs_number", "Not a valid NHS number.")
        return nhs
    if rule.fhir and rule.subject in (QUERY, BODY):
        from .fhir import subject as fhir_subject
        return (fhir_subject.of_search(rule.params) if rule.subject == QUERY else fhir_subject.of_create())
    if rule.subject == QUERY:
        values = request.args.getlist("nhs_number")
        if len(values) != 1:
            raise _unprocessable("nhs_number", "Give the person's NHS number (nhs_number) once.")
        if not is_valid(values[0]):
            raise _unprocessable("nhs_number", "Not a valid NHS number.")
        return values[0]
    if rule.subject == BODY:
        if not request.is_json:
            raise Problem(415, "Unsupported Media Type", "A create is sent as application/json.")
        body = body_json()
        nhs = body.get("nhs_number") if isinstance(body, dict) else None
        if not isinstance(nhs, str) or not is_valid(nhs):
            problem = _unprocessable("nhs_number", "Give the person's valid NHS number (nhs_number).")
            problem.unsettled_create = rule.service  # the service may name the body's other bad fields
            raise problem
        return nhs
    nhs = subjects.person_of(session, rule.service, resource_id)  # RESOURCE
    if nhs is None:
        raise Problem(404, "Not Found", "No such resource.")
    return nhs


# -- the person's standing: relationship, preferences, records ------------------------------------
def active_relationship(nhs_number: str, org: str, at: datetime):
    """A SQL expression: the kind of the caller's active relationship, a held or declared one before
    emergency access (so an access is flagged as break glass only when nothing else allows it)."""
    r = care_relationships
    return (select(r.c.kind).where(r.c.nhs_number == nhs_number, r.c.org == org, r.c.ended_at.is_(None),
                                   or_(r.c.expires_at.is_(None), r.c.expires_at > at))
            .order_by(r.c.kind == EMERGENCY, r.c.started_at).limit(1).scalar_subquery())


def hidden_from(prefs: dict | None, role: str) -> set[str]:
    """The initiatives a person's sharing preferences withhold from a role (admins see everything)."""
    if not prefs or role == "admin":
        return set()
    return set(prefs.get(role, []))


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
    columns = [select(sharing.c.withhold).where(sharing.c.nhs_number == decision.subject)
               .scalar_subquery().label("withhold"),
               active_relationship(decision.subject, caller.org, at).label("relationship")]
    if rule.action == "create":
        columns.append(subjects.holds_any(rule.service, decision.subject).label("has_record"))
    standing = session.execute(select(*columns)).one()
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
        if request.method in NO_BODY and request.get_data(cache=True):
            raise Problem(400, "Bad Request", f"A {request.method} request has no body; send none.")
        from .security import request_session
        g.decision = decide(rule, caller, resource_id, request_session())
    except Problem as problem:
        if rule is not None and rule.page:  # the pages answer in HTML: a sign-in or an error page
            return current_app.extensions["page_refusal"](problem)
        if getattr(problem, "unsettled_create", None):  # refused; only its other bad fields are asked for
            raise current_app.extensions["every_bad_field"](problem) from None
        raise
    return None


def current() -> Decision:
    return g.decision


# -- the last line: no id of a left-out record in an answer ---------------------------------------
SCRUBBED = ("application/json", "application/fhir+json", "application/problem+json", "text/html")


def hidden_ids(session, nhs_number: str, unseen) -> set[str]:
    """The ids of the person's records in the initiatives left out for the caller."""
    if not unseen:
        return set()
    return set(session.execute(select(subjects_table.c.resource_id).where(
        subjects_table.c.nhs_number == nhs_number, subjects_table.c.service.in_(sorted(unseen)))).scalars())


def scrub_value(value, ids: set[str]):
    """``value`` with every id of ``ids`` gone: a field holding one becomes null, a text naming one
    says ``[withheld]`` (a budget's ``plan_id``, a change summary "plan_id a → b")."""
    if isinstance(value, str):
        if value in ids:
            return None
        for rid in ids:
            if rid in value:
                value = value.replace(rid, "[withheld]")
        return value
    if isinstance(value, dict):
        return {k: scrub_value(v, ids) for k, v in value.items()}
    if isinstance(value, list):
        return [scrub_value(v, ids) for v in value]
    return value


def scrub(response):
    """after_request: an answer about one person never carries the id of one of their records in an
    initiative left out for the caller, whatever refers to it (cross-references between
    initiatives, summaries). The raw bytes are searched first; most answers are sent untouched."""
    decision = g.get("decision")
    if decision is None or decision.subject is None or not decision.unseen or response.direct_passthrough \
            or not response.mimetype or not response.mimetype.startswith(SCRUBBED):
        return response
    from .security import request_session
    ids = hidden_ids(request_session(), decision.subject, decision.unseen)
    body = response.get_data()
    found = {rid for rid in ids if rid.encode() in body}
    if not found:
        return response
    if response.mimetype == "text/html":
        text = body.decode()
        for rid in found:
            text = text.replace(rid, "[withheld]")
        response.set_data(text.encode())
    else:
        response.set_data(json.dumps(scrub_value(json.loads(body), found)).encode())
    return response


# -- the second line: answers that list items -----------------------------------------------------
@dataclass
class Visibility:
    """Which people's items of which initiatives a caller may see: relationship, scope, preferences,
    read for a whole page of people at once."""

    caller: Caller
    related: set[str] = field(default_factory=set)
    prefs: dict[str, dict] = field(default_factory=dict)

    @classmethod
    def of(cls, session, caller: Caller, people) -> "Visibility":
        people = sorted(set(people))
        seen = cls(caller)
        if not people:
            return seen
        at = datetime.now(timezone.utc)
        r = care_relationships
        if caller.role != "admin":
            seen.related = set(session.execute(select(r.c.nhs_number).where(
                r.c.nhs_number.in_(people), r.c.org == caller.org, r.c.ended_at.is_(None),
                or_(r.c.expires_at.is_(None), r.c.expires_at > at))).scalars())
        seen.prefs = dict(session.execute(select(sharing.c.nhs_number, sharing.c.withhold)
                                          .where(sharing.c.nhs_number.in_(people))).all())
        return seen

    def allows(self, nhs_number: str, initiative: str | None) -> bool:
        if initiative in SHAREABLE and not may_read(self.caller, initiative):
            return False
        if self.caller.role != "admin" and nhs_number not in self.related:
            return False
        return initiative not in hidden_from(self.prefs.get(nhs_number), self.caller.role)

    def hidden_ids(self, session, people) -> dict[str, set[str]]:
        """Per person, the ids of their records the caller may not see: an item it may see can still
        refer to one (a budget's ``plan_id``), and :func:`scrub_value` takes them out of it."""
        people = sorted(set(people))
        hidden: dict[str, set[str]] = {nhs: set() for nhs in people}
        if people:
            for nhs, service, rid in session.execute(select(
                    subjects_table.c.nhs_number, subjects_table.c.service, subjects_table.c.resource_id)
                    .where(subjects_table.c.nhs_number.in_(people))):
                if not self.allows(nhs, service):
                    hidden[nhs].add(rid)
        return hidden
