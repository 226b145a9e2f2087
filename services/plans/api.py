"""HTTP routes of the plans service: requests in, representations out; the commands are in
``handlers.py``, the rules in ``domain.py``."""
from __future__ import annotations

import json

import flask_smorest
from flask import Response
from sqlalchemy import select

from coproduction.auth import requires
from coproduction.events import iso, now
from coproduction.http import Problem, ctx, with_etag
from coproduction.idempotency import create_once
from coproduction.paging import keyset_page

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
@bp.route("", methods=["POST"])
@requires("plans:write")
@bp.arguments(PlanCreateSchema)
@bp.response(201, PlanSchema)
def create_plan(body):
    """Create a draft plan. A retried POST with the same ``Idempotency-Key`` returns the first result."""
    def create(session):
        plan, _event = handlers.create(session, body)
        return plan_json(plan), f"/v1/plans/{plan.id}"
    return create_once(idempotency_keys, create)


@bp.route("", methods=["GET"])
@requires("plans:read")
@bp.arguments(PlanListQuery, location="query")
@bp.response(200, PlanListSchema)
def list_plans(query):
    """A person's plans, oldest first, paged with an opaque cursor."""
    stmt = select(Plan).where(Plan.nhs_number == query["nhs_number"])
    if query.get("status"):
        stmt = stmt.where(Plan.status == query["status"])
    with ctx().db.session() as session:
        plans, next_cursor = keyset_page(session, stmt, Plan, query["limit"], query["cursor"])
    return {"nhs_number": query["nhs_number"], "items": [plan_json(p) for p in plans], "next_cursor": next_cursor}


@bp.route("/<plan_id>", methods=["GET"])
@requires("plans:read")
@bp.response(200, PlanSchema)
def get_plan(plan_id):
    with ctx().db.session() as session:
        return with_etag(plan_json(PLANS.load(session, plan_id)))


def _fhir_response(plan: dict) -> Response:
    resp = Response(json.dumps(fhir.plan_bundle(plan, iso(now()))), mimetype=FHIR_JSON)
    resp.headers["ETag"] = f'"{plan["version"]}"'
    return resp


@bp.route("/<plan_id>/fhir", methods=["GET"])
@requires("plans:read")
@bp.response(200, description="A FHIR R4 Bundle (collection): Patient, CarePlan, Goals, Observations",
             content_type=FHIR_JSON)
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


@bp.route("/<plan_id>/versions", methods=["GET"])
@requires("plans:read")
@bp.response(200, VersionListSchema)
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


@bp.route("/<plan_id>/versions/<int:version>", methods=["GET"])
@requires("plans:read")
@bp.response(200, PlanSchema)
def get_version(plan_id, version):
    """The plan exactly as it was at that version."""
    with ctx().db.session() as session:
        return with_etag(_version(session, plan_id, version).snapshot)


@bp.route("/<plan_id>/versions/<int:version>/fhir", methods=["GET"])
@requires("plans:read")
@bp.response(200, description="That version as a FHIR R4 Bundle", content_type=FHIR_JSON)
def get_version_fhir(plan_id, version):
    with ctx().db.session() as session:
        return _fhir_response(_version(session, plan_id, version).snapshot)


# -- revisions ---------------------------------------------------------------------------------
@bp.route("/<plan_id>", methods=["PATCH"])
@requires("plans:write")
@bp.arguments(PlanPatchSchema)
@bp.response(200, PlanSchema)
def revise_plan(body, plan_id):
    """Revise a plan (``If-Match`` required): the fields sent replace the plan's; a new version."""
    reason = body.pop("reason", None)
    with ctx().db.session() as session:
        return _answer(handlers.revise(session, plan_id, body, reason))


@bp.route("/<plan_id>/goals/<goal_id>", methods=["PATCH"])
@requires("plans:write")
@bp.arguments(GoalPatchSchema)
@bp.response(200, PlanSchema)
def update_goal(body, plan_id, goal_id):
    """Change one goal (its statuses, target, description); ``If-Match`` is the plan's version."""
    reason = body.pop("reason", None)
    with ctx().db.session() as session:
        return _answer(handlers.update_goal(session, plan_id, goal_id, body, reason))


@bp.route("/<plan_id>/actions/<action_id>", methods=["PATCH"])
@requires("plans:write")
@bp.arguments(ActionPatchSchema)
@bp.response(200, PlanSchema)
def update_action(body, plan_id, action_id):
    """Change one action (e.g. mark it done); ``If-Match`` is the plan's version."""
    reason = body.pop("reason", None)
    with ctx().db.session() as session:
        return _answer(handlers.update_action(session, plan_id, action_id, body, reason))


# -- state transitions -------------------------------------------------------------------------
@bp.route("/<plan_id>/agree", methods=["POST"])
@requires("plans:write")
@bp.arguments(AgreeSchema)
@bp.response(200, PlanSchema)
def agree_plan(body, plan_id):
    """Agree a draft with the person: records who agreed and whether the person did."""
    with ctx().db.session() as session:
        return _answer(handlers.agree(session, plan_id, body["agreed_by"], body["person_agreed"]))


def _move(plan_id: str, action: str, reason: str | None) -> Response:
    with ctx().db.session() as session:
        return _answer(handlers.move(session, plan_id, action, reason))


@bp.route("/<plan_id>/hold", methods=["POST"])
@requires("plans:write")
@bp.arguments(RequiredReasonSchema)
@bp.response(200, PlanSchema)
def hold_plan(body, plan_id):
    """Put an active plan on hold (e.g. a hospital admission); the reason is required."""
    return _move(plan_id, "hold", body["reason"])


@bp.route("/<plan_id>/resume", methods=["POST"])
@requires("plans:write")
@bp.arguments(ReasonSchema)
@bp.response(200, PlanSchema)
def resume_plan(body, plan_id):
    return _move(plan_id, "resume", body.get("reason"))


@bp.route("/<plan_id>/close", methods=["POST"])
@requires("plans:write")
@bp.arguments(ReasonSchema)
@bp.response(200, PlanSchema)
def close_plan(body, plan_id):
    """Close an active or on-hold plan as completed (plan.closed, status completed)."""
    return _move(plan_id, "close", body.get("reason"))


@bp.route("/<plan_id>/revoke", methods=["POST"])
@requires("plans:write")
@bp.arguments(RequiredReasonSchema)
@bp.response(200, PlanSchema)
def revoke_plan(body, plan_id):
    """End a plan before completion, e.g. made in error (plan.closed, status revoked)."""
    return _move(plan_id, "revoke", body["reason"])
