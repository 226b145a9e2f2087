"""``Patient/{nhs}``, ``Patient/{nhs}/$everything`` and ``Patient/{nhs}/$summary``.

The Patient's id is the NHS number: the gateway holds no demographics, so the Patient is that
identifier and when the person's record last changed. ``$everything`` and ``$summary`` are built
from the gateway's projection (every aggregate of the person, as its newest event carried it), so
they answer even when a service is down; an initiative the person withholds from the caller's role,
or that the caller's scopes do not read, is left out and an OperationOutcome (``suppressed``) says so.
"""
from __future__ import annotations

import uuid

from sqlalchemy import select

from coproduction.events import iso
from coproduction.http import Problem
from interop import fhir_care, fhir_plans
from interop.fhir_bundles import document, narrative, searchset, suppressed

from .. import policy, portfolio
from ..models import aggregates, portfolios
from ..security import request_session
from . import bp
from .export import plan_from_state
from .responses import base_url, fhir_json, resource_response, timestamp

LOINC = "http://loinc.org"
EMPTY_REASON = "http://terminology.hl7.org/CodeSystem/list-empty-reason"


def patient_resource(nhs_number: str, updated) -> dict:
    resource = fhir_plans.patient(nhs_number, fhir_plans.SERVER)
    resource["meta"] = {"lastUpdated": iso(updated)}
    return resource


def _portfolio(nhs_number: str):
    row = request_session().execute(select(portfolios.c.document, portfolios.c.updated_at)
                                    .where(portfolios.c.nhs_number == nhs_number)).first()
    if row is None:
        raise Problem(404, "Not Found", "The gateway holds no record of this person.")
    return row


@bp.get("/Patient/<nhs_number>")
def read_patient(nhs_number):
    return resource_response(patient_resource(nhs_number, _portfolio(nhs_number).updated_at))


def _section(row) -> dict:
    state = {k: v for k, v in row["state"].items() if not k.startswith("_")}
    return dict(state, id=row["aggregate_id"], version=row["version"], updated_at=iso(row["event_time"]))


def record_resources(nhs_number: str, unseen: set[str]) -> dict[str, list[dict]]:
    """The person's shared record as FHIR, by initiative, leaving out what is unseen."""
    rows = request_session().execute(select(aggregates).where(aggregates.c.nhs_number == nhs_number)
                                     .order_by(aggregates.c.event_time, aggregates.c.aggregate_id)).mappings().all()
    out: dict[str, list[dict]] = {"plans": [], "budgets": [], "decisions": [], "groups": []}
    for row in rows:
        service = row["service"]
        if service in unseen or service not in out:
            continue
        if service == "plans":
            out[service].extend(fhir_plans.plan_resources(plan_from_state(row), fhir_plans.SERVER))
        elif service == "budgets":
            out[service].append(fhir_care.account(nhs_number, _section(row), plan_visible="plans" not in unseen))
        elif service == "decisions":
            out[service].append(fhir_care.task(nhs_number, _section(row)))
        else:
            out[service].append(fhir_care.episode_of_care(nhs_number, _section(row)))
    return out


def _left_out(unseen: set[str]) -> list[dict]:
    return [suppressed(sorted(unseen))] if unseen else []


@bp.get("/Patient/<nhs_number>/$everything")
def everything(nhs_number):
    """The person's shared record: Patient, CarePlans with their Goals and Observations, budgets
    (Account), shared decisions (Task) and course places (EpisodeOfCare)."""
    decision = policy.current()
    row = _portfolio(nhs_number)
    unseen = set(decision.unseen)
    by_initiative = record_resources(nhs_number, unseen)
    resources = [patient_resource(nhs_number, row.updated_at)] + [r for rs in by_initiative.values() for r in rs]
    url = f"{base_url()}/Patient/{nhs_number}/$everything"
    return fhir_json(searchset(base_url(), resources, timestamp=timestamp(), self_url=url, total=len(resources),
                               outcomes=_left_out(unseen)))


def _ref(resource: dict) -> dict:
    return {"reference": f"{resource['resourceType']}/{resource['id']}"}


def _coded(system: str, code: str, display: str) -> dict:
    return {"coding": [{"system": system, "code": code, "display": display}]}


def _what_matters(doc: dict) -> dict:
    lines = []
    for p in doc.get("priorities") or []:
        who = "in the person's words" if p.get("expressed_by_person") else "recorded by their carers"
        lines.append(f"{p['text']} ({who}; from {', '.join(p.get('initiatives') or [])})")
    section = {"title": "What matters to me",
               "code": _coded(fhir_care.CODES + "summary-section", "what-matters", "What matters to me")}
    if lines:
        section["text"] = narrative("What matters to the person, most important first", lines)
    else:
        section["emptyReason"] = _coded(EMPTY_REASON, "notasked", "Not Asked")
    return section


def _entries(title: str, code: dict, resources: list[dict], withheld: bool, empty_text: str) -> dict:
    section = {"title": title, "code": code}
    if withheld:
        section["emptyReason"] = _coded(EMPTY_REASON, "withheld", "Information Withheld")
        section["text"] = narrative(title, ["Left out for this client (the person's sharing preferences, or "
                                            "the scopes this client was granted)."])
    elif resources:
        section["entry"] = [_ref(r) for r in resources]
    else:
        section["emptyReason"] = _coded(EMPTY_REASON, "nilknown", "Nil Known")
        section["text"] = narrative(title, [empty_text])
    return section


@bp.get("/Patient/<nhs_number>/$summary")
def summary(nhs_number):
    """An International Patient Summary-style document for a hospital team on admission: what
    matters to the person first, then their plans, results, support and decisions."""
    decision = policy.current()
    row = _portfolio(nhs_number)
    unseen = set(decision.unseen)
    doc = portfolio.for_role(row.document, unseen)
    found = record_resources(nhs_number, unseen)
    plans = [r for r in found["plans"] if r["resourceType"] in ("CarePlan", "Goal")]
    results = [r for r in found["plans"] if r["resourceType"] == "Observation"]
    conditions = sorted({c for p in doc.get("plans") or [] for c in p.get("conditions") or []})
    problems = {"title": "Problems", "code": _coded(LOINC, "11450-4", "Problem list - Reported")}
    if conditions and "plans" not in unseen:
        problems["text"] = narrative("Conditions the person's care and support plans address", conditions)
    else:
        problems["emptyReason"] = _coded(EMPTY_REASON, "unavailable", "Unavailable")
    not_held = [{"title": title, "code": _coded(LOINC, code, display),
                 "text": narrative(title, ["Not held by this platform: see the GP record."]),
                 "emptyReason": _coded(EMPTY_REASON, "unavailable", "Unavailable")}
                for title, code, display in (("Allergies and intolerances", "48765-2", "Allergies and adverse reactions Document"),
                                             ("Medication summary", "10160-0", "History of Medication use Narrative"))]
    support = found["budgets"] + found["groups"]
    sections = [
        _what_matters(doc),
        _entries("Care and support plans", _coded(LOINC, "18776-5", "Plan of care note"), plans,
                 "plans" in unseen, "No care and support plan."),
        _entries("Shared decisions", _coded(fhir_care.CODES + "summary-section", "shared-decisions", "Shared decisions"),
                 found["decisions"], "decisions" in unseen, "No shared decision."),
        _entries("Care and support the person has", _coded(fhir_care.CODES + "summary-section", "support",
                                                          "Personal budgets and courses"), support,
                 {"budgets", "groups"} <= unseen, "No personal budget and no course place."),
        _entries("Results", _coded(LOINC, "30954-2", "Relevant diagnostic tests/laboratory data Narrative"), results,
                 "plans" in unseen, "No results shared with the person."),
        problems, *not_held,
    ]
    at = timestamp()
    composition = {
        "resourceType": "Composition", "id": str(uuid.uuid4()), "status": "final",
        "type": _coded(LOINC, "60591-5", "Patient summary Document"),
        "subject": fhir_plans.SERVER.patient_ref(nhs_number), "date": at,
        "author": [{"display": "coproduction gateway"}],
        "title": "Summary on admission: what matters to the person, their plans, support and decisions",
        "section": sections,
    }
    resources = [patient_resource(nhs_number, row.updated_at), *plans, *found["decisions"], *support, *results]
    return fhir_json(document(base_url(), composition, resources, timestamp=at, identifier=str(uuid.uuid4())))
