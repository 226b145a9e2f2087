"""The route rules: every route the gateway serves or forwards, the scope it needs, and where its
subject (the person) comes from (the kinds are explained in gateway/policy/__init__.py)."""
from __future__ import annotations

from dataclasses import dataclass

from flask import request

from coproduction.auth import Caller
from coproduction.service import service_names, services
from interop.fhir_care import MAPPINGS as RECORD_MAPPINGS

PATH, RESOURCE, BODY, QUERY, NONE, POPULATION = "path", "resource", "body", "query", "none", "population"
PERSONAL = (PATH, RESOURCE, BODY, QUERY)
SHAREABLE = service_names()
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
    document: bool = False         # the view shows the portfolio document: read with the person's standing
    changes_days: int = 0          # and the person's changes of the last so many days (the admission summary)



#: the SMART scope that reads an initiative on the FHIR door (coproduction/auth.py SMART_GRANTS)
SMART_READS = {spec.name: f"system/{spec.fhir_resource}.r" for spec in services() if spec.fhir_resource}


def may_read(caller: Caller, initiative: str) -> bool:
    """Whether the caller's scopes read an initiative: ours (``plans:read``) or its SMART scope."""
    return caller.has(f"{initiative}:read") or (initiative in SMART_READS and caller.has(SMART_READS[initiative]))


def _person(scope: str, initiative: str = "portfolio", action: str = "read", page: bool = False,
            document: bool = False, changes_days: int = 0) -> Rule:
    return Rule(scope, PATH, initiative, action=action, page=page, document=document, changes_days=changes_days)


#: the gateway's own routes: (method, route as Flask writes it) -> rule. HEAD is decided as GET.
PEOPLE = "/v1/people/<nhs_number>"
RULES: dict[tuple[str, str], Rule] = {
    ("GET", f"{PEOPLE}/portfolio"): _person("portfolio:read", document=True),
    ("GET", f"{PEOPLE}/priorities"): _person("portfolio:read", document=True),
    ("GET", f"{PEOPLE}/admission-summary"): _person("portfolio:read", document=True, changes_days=30),
    ("GET", f"{PEOPLE}/fhir"): _person("portfolio:read", document=True),
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
    ("GET", "/people/<nhs_number>"): _person("portfolio:read", page=True, document=True),
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
    # the records the FHIR door maps from the portfolio, each service's one resource (interop/fhir_care.py)
    **{route: rule for spec in services() if spec.fhir_resource in RECORD_MAPPINGS
       for route, rule in _fhir_reads(spec.fhir_resource, spec.name, spec.name, "<resource_id>").items()},
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
FORWARDED = {route: spec.name for spec in services() for route in spec.routes}
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


