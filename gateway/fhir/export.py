"""A person's record as one FHIR R4 Bundle: ``GET /v1/people/{nhs}/fhir``.

Built from the gateway's projection (the ``aggregates`` table: each plan as its newest event
carried it), so it answers even when the plans service is down, and reads the same as the plans
service's own ``GET /v1/plans/{id}/fhir`` because both use one mapping
(``interop/fhir_plans.py``). The Bundle (type ``collection``) holds the Patient (identified by
the NHS number, system ``https://fhir.nhs.uk/Id/nhs-number``), every plan as a CarePlan with its
Goals and the results it rests on as Observations. When the person withheld their plans from the
caller's role, the plans are left out and an OperationOutcome (code ``suppressed``) says so.
"""
from __future__ import annotations

import json

import flask_smorest
from flask import Response
from sqlalchemy import select

from coproduction.events import iso, now
from coproduction.http import ctx
from interop import fhir_plans as plan_fhir

from ..api import person
from ..models import aggregates

FHIR_JSON = "application/fhir+json"

bp = flask_smorest.Blueprint("fhir", __name__, url_prefix="/v1/people",
                             description="A person's record as FHIR R4 (Patient, CarePlan, Goal, Observation)")


def plan_from_state(row) -> dict:
    """A plan in the plans API's shape, from the projection's row (what its newest event carried)."""
    state = {k: v for k, v in row["state"].items() if not k.startswith("_")}
    plan = dict(state, id=row["aggregate_id"], version=row["version"], nhs_number=row["nhs_number"],
                updated_at=iso(row["event_time"]))
    plan.pop("plan_id", None)
    return plan


def withheld_outcome(services: list[str]) -> dict:
    return {"resourceType": "OperationOutcome", "id": plan_fhir.derived_id("withheld", *services),
            "issue": [{"severity": "information", "code": "suppressed",
                       "diagnostics": "The person has chosen not to share their "
                                      f"{', '.join(services)} with this organisation's role."}]}


@bp.route("/<nhs_number>/fhir")
@bp.response(200, description="A FHIR R4 Bundle (collection)", content_type=FHIR_JSON)
def person_fhir(nhs_number):
    """The person's plans as a FHIR R4 Bundle: Patient, CarePlans, Goals, Observations."""
    _who, hidden, _document = person()
    resources = []
    if "plans" in hidden:
        resources.append(withheld_outcome(["plans"]))
    else:
        with ctx().db.session() as session:
            rows = session.execute(
                select(aggregates).where(aggregates.c.nhs_number == nhs_number, aggregates.c.service == "plans")
                .order_by(aggregates.c.event_time, aggregates.c.aggregate_id)).mappings().all()
        for row in rows:
            resources.extend(plan_fhir.plan_resources(plan_from_state(row)))
    bundle = plan_fhir.bundle(nhs_number, resources, timestamp=iso(now()))
    return Response(json.dumps(bundle), mimetype=FHIR_JSON)
