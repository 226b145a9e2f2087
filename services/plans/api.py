"""HTTP routes of the plans service: requests in, representations out; the commands are in
``handlers.py``, the rules in ``domain.py``."""
from __future__ import annotations

import json

import flask_smorest
from flask import Response
from sqlalchemy import select

from coproduction.events import iso, now
from coproduction.http import Problem, ctx, with_etag
from coproduction.idempotency import create_once, created
from coproduction.paging import keyset_page, where_given
from coproduction.routes import action_routes, endpoint

from interop import fhir_plans as fhir
from . import handlers
from .handlers import PLANS, plan_json
from .models import Plan, PlanVersion, idempotency_keys
from .schemas import (ActionPatchSchema, AgreeSchema, GoalPatchSchema, PlanCreateSchema, PlanListQuery,
                      PlanListSchema, PlanPatchSchema, PlanSchema, ReasonSchema, RequiredReasonSchema,
                      VersionListSchema)

bp = flask_smorest.Blueprint("plans", __name__, url_prefix="/v1/plans",
                             description="Year of Care care and support plans")

FHIR_JSON = "application/fhir+json"


def _answer(result: tuple[Plan, dict | None]) -> Response:
    plan, _event = result
    return with_etag(plan_json(plan))


# -- create, read, list -------------------------------------------------------------------------
@endpoint(bp, "", "plans:write", PlanSchema, method="POST", body=PlanCreateSchema, status=201)
def create_plan(body):
    """Create a draft plan. A retried POST with the same ``Idempotency-Key`` returns the first result."""
    return create_once(idempotency_keys, created(handlers.create, body, plan_json, "/v1/plans"))


@endpoint(bp, "", "plans:read", PlanListSchema, body=PlanListQuery, location="query")
def list_plans(query):
    """A person's plans, oldest first, paged with an opaque cursor."""
    stmt = where_given(select(Plan), Plan, query, "nhs_number", "status")
    with ctx().db.session() as session:
        plans, next_cursor = keyset_page(session, stmt, Plan, query["limit"], query["cursor"])
    return {"nhs_number": query["nhs_number"], "items": [plan_json(p) for p in plans], "next_cursor": next_cursor}


@endpoint(bp, "/<plan_id>", "plans:read", PlanSchema)
def get_plan(plan_id):
    with ctx().db.session() as session:
        return with_etag(plan_json(PLANS.load(session, plan_id)))


def _fhir_response(plan: dict) -> Response:
    resp = Response(json.dumps(fhir.plan_bundle(plan, iso(now()))), mimetype=FHIR_JSON)
    resp.headers["ETag"] = f'"{plan["version"]}"'
    return resp


@endpoint(bp, "/<plan_id>/fhir", "plans:read", content_type=FHIR_JSON,
          description="A FHIR R4 Bundle (collection): Patient, CarePlan, Goals, Observations")
def get_plan_fhir(plan_id):
    with ctx().db.session() as session:
        return _fhir_response(plan_json(PLANS.load(session, plan_id)))


# -- versions ----------------------------------------------------------------------------------
MAX_VERSION = 2**31 - 1  # PlanVersion.version is a 32-bit integer


def _version(session, plan_id: str, version: int) -> PlanVersion:
    PLANS.load(session, plan_id)
    # a number past the column's range is no version either (PostgreSQL would refuse to compare it)
    row = session.get(PlanVersion, (plan_id, version)) if version <= MAX_VERSION else None
    if row is None:
        raise Problem(404, "Not Found", f"This plan has no version {version}.")
    return row


@endpoint(bp, "/<plan_id>/versions", "plans:read", VersionListSchema)
def list_versions(plan_id):
    """Every version of the plan, oldest first: what changed, why, who changed it and when."""
    with ctx().db.session() as session:
        plan = PLANS.load(session, plan_id)
        rows = session.execute(select(PlanVersion).where(PlanVersion.plan_id == plan_id)
                               .order_by(PlanVersion.version)).scalars().all()
        return {"plan_id": plan_id, "nhs_number": plan.nhs_number, "current_version": plan.version,
                "items": [{"version": r.version, "event_type": r.event_type, "status": r.status,
                           "changes": r.changes, "reason": r.reason, "changed_by": r.changed_by,
                           "at": iso(r.created_at)} for r in rows]}


@endpoint(bp, "/<plan_id>/versions/<int:version>", "plans:read", PlanSchema)
def get_version(plan_id, version):
    """The plan exactly as it was at that version."""
    with ctx().db.session() as session:
        return with_etag(_version(session, plan_id, version).snapshot)


@endpoint(bp, "/<plan_id>/versions/<int:version>/fhir", "plans:read", content_type=FHIR_JSON,
          description="That version as a FHIR R4 Bundle")
def get_version_fhir(plan_id, version):
    with ctx().db.session() as session:
        return _fhir_response(_version(session, plan_id, version).snapshot)


# -- revisions ---------------------------------------------------------------------------------
def _revise(command, body: dict, *ids: str) -> Response:
    reason = body.pop("reason", None)
    with ctx().db.session() as session:
        return _answer(command(session, *ids, body, reason))


@endpoint(bp, "/<plan_id>", "plans:write", PlanSchema, method="PATCH", body=PlanPatchSchema)
def revise_plan(body, plan_id):
    """Revise a plan (``If-Match`` required): the fields sent replace the plan's; a new version."""
    return _revise(handlers.revise, body, plan_id)


@endpoint(bp, "/<plan_id>/goals/<goal_id>", "plans:write", PlanSchema, method="PATCH", body=GoalPatchSchema)
def update_goal(body, plan_id, goal_id):
    """Change one goal (its statuses, target, description); ``If-Match`` is the plan's version."""
    return _revise(handlers.update_goal, body, plan_id, goal_id)


@endpoint(bp, "/<plan_id>/actions/<action_id>", "plans:write", PlanSchema, method="PATCH",
          body=ActionPatchSchema)
def update_action(body, plan_id, action_id):
    """Change one action (e.g. mark it done); ``If-Match`` is the plan's version."""
    return _revise(handlers.update_action, body, plan_id, action_id)


# -- state transitions -------------------------------------------------------------------------
@endpoint(bp, "/<plan_id>/agree", "plans:write", PlanSchema, method="POST", body=AgreeSchema)
def agree_plan(body, plan_id):
    """Agree a draft with the person: records who agreed and whether the person did."""
    with ctx().db.session() as session:
        return _answer(handlers.agree(session, plan_id, body["agreed_by"], body["person_agreed"]))


def _move(action: str, body: dict, plan_id: str) -> Response:
    with ctx().db.session() as session:
        return _answer(handlers.move(session, plan_id, action, body.get("reason")))


action_routes(bp, "/<plan_id>/{action}", "plans:write", PlanSchema, "{action}_plan", _move, [
    ("hold", RequiredReasonSchema,
     "Put an active plan on hold (e.g. a hospital admission); the reason is required."),
    ("resume", ReasonSchema, None),
    ("close", ReasonSchema, "Close an active or on-hold plan as completed (plan.closed, status completed)."),
    ("revoke", RequiredReasonSchema,
     "End a plan before completion, e.g. made in error (plan.closed, status revoked)."),
])
