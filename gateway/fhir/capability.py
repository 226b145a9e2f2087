"""``GET /fhir/R4/metadata``: the CapabilityStatement, public.

Truthful by construction: each resource's interactions are read off the access policy's FHIR rules
(a route nobody wrote a rule for is never served, so it is never advertised either), its search
parameters off search.py, and the security section off the OAuth token endpoint that really issues
the tokens.
"""
from __future__ import annotations

from interop.fhir_subscriptions import TOPIC_CANONICAL, TOPICS

from .. import policy
from ..oauth import token_url
from . import bp
from .responses import FHIR_VERSION, base_url, fhir_json
from .search import SEARCH_PARAMS

OPERATIONS = {
    "Patient": [("everything", "http://hl7.org/fhir/OperationDefinition/Patient-everything"),
                ("summary", "http://hl7.org/fhir/uv/ips/OperationDefinition/summary")],
    "Subscription": [("status", "http://hl7.org/fhir/uv/subscriptions-backport/OperationDefinition/backport-subscription-status"),
                     ("events", "http://hl7.org/fhir/uv/subscriptions-backport/OperationDefinition/backport-subscription-events")],
}
DOCUMENTATION = {
    "Patient": "The id is the NHS number; the gateway holds no demographics.",
    "CarePlan": "A Year of Care care and support plan. Reads ask the plans service; searches read the gateway's "
                "projection. Writes map into the plans service (docs/fhir.md).",
    "Goal": "A goal of a care plan; its id is <plan id>.<goal id>, its versions are its plan's.",
    "Observation": "A result shared with the person before the care planning conversation; part of its plan.",
    "Account": "A personal health budget.",
    "Task": "A shared decision (NICE NG197): options as input, the choice and the person's reason as output.",
    "EpisodeOfCare": "A place on a self-management course.",
    "Subscription": "Topic-based, as the Subscriptions Backport IG: rest-hook channels only.",
}


def _interactions() -> dict[str, list[str]]:
    """resource type -> the FHIR interactions its routes in the policy serve."""
    out: dict[str, list[str]] = {}
    for (method, route), _rule in policy.RULES.items():
        if not route.startswith(policy.FHIR + "/") or route == policy.FHIR + "/metadata":
            continue
        parts = route[len(policy.FHIR) + 1:].split("/")
        if len(parts) > 1 and parts[-1].startswith("$") or (len(parts) > 2 and parts[1].startswith("$")):
            continue  # operations are listed on their own
        name = {("GET", 1): "search-type", ("POST", 1): "create", ("GET", 2): "read", ("PUT", 2): "update",
                ("DELETE", 2): "delete"}.get((method, len(parts)))
        if len(parts) == 3 and parts[2] == "_history":
            name = "history-instance"
        elif len(parts) == 4:
            name = "vread"
        if name:
            out.setdefault(parts[0], [])
            if name not in out[parts[0]]:
                out[parts[0]].append(name)
    return out


def _resource(kind: str, interactions: list[str]) -> dict:
    entry = {"type": kind, "documentation": DOCUMENTATION.get(kind, ""),
             "interaction": [{"code": code} for code in sorted(interactions)],
             "versioning": "versioned" if "vread" in interactions else "no-version",
             "readHistory": "vread" in interactions, "updateCreate": False,
             "conditionalCreate": kind == "CarePlan", "conditionalUpdate": False, "conditionalDelete": "not-supported"}
    if kind in SEARCH_PARAMS:
        entry["searchParam"] = [{"name": name, "type": kind_, "documentation": doc}
                                for name, (kind_, doc) in SEARCH_PARAMS[kind].items()]
    if kind in OPERATIONS:
        entry["operation"] = [{"name": name, "definition": url} for name, url in OPERATIONS[kind]]
    if kind == "Subscription":
        entry["extension"] = [{"url": TOPIC_CANONICAL, "valueCanonical": topic} for topic in TOPICS]
    return entry


def capability_statement() -> dict:
    base = base_url()
    return {
        "resourceType": "CapabilityStatement", "id": "coproduction", "url": f"{base}/metadata",
        "name": "CoproductionFhirServer", "title": "coproduction: the person-centred record as FHIR R4",
        "status": "active", "experimental": False, "date": "2027-01-01", "publisher": "coproduction",
        "description": "Care and support plans, goals, results, personal health budgets, shared decisions and "
                       "course places, for GP, hospital and social care systems; consent, care relationships "
                       "and audit as on the rest of the gateway.",
        "kind": "instance", "software": {"name": "coproduction", "version": "0.1.0"},
        "implementation": {"description": "The coproduction gateway's FHIR door", "url": base},
        "fhirVersion": FHIR_VERSION, "format": ["application/fhir+json", "json"],
        "rest": [{
            "mode": "server",
            "documentation": "Every request needs an access token from the token endpoint (SMART Backend "
                             "Services) with the system/ scope of the interaction; the organisation must have a "
                             "care relationship with the person (docs/access.md).",
            "security": {
                "cors": False,
                "service": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/restful-security-service",
                                         "code": "SMART-on-FHIR", "display": "SMART-on-FHIR"}]}],
                "extension": [{"url": "http://fhir-registry.smarthealthit.org/StructureDefinition/oauth-uris",
                               "extension": [{"url": "token", "valueUri": token_url()}]}],
                "description": "OAuth 2.0 client credentials with private_key_jwt (RS384 or ES384); discovery at "
                               "/.well-known/smart-configuration; SMART v2 system scopes.",
            },
            "resource": [_resource(kind, interactions) for kind, interactions in _interactions().items()],
        }],
    }


@bp.get("/metadata")
def metadata():
    resp = fhir_json(capability_statement())
    resp.headers["Cache-Control"] = "public, max-age=300"
    return resp
