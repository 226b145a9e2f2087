"""HTTP routes of the plans service."""
from __future__ import annotations

import uuid

import flask_smorest
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from coproduction import idempotency
from coproduction.auth import requires, service_caller
from coproduction.events import iso, now, stamp_priorities
from coproduction.http import Problem, check_if_match, ctx, traceparent, with_etag
from coproduction.outbox import emit

from .models import IllegalTransition, Plan, idempotency_keys, outbox
from .schemas import AgreeSchema, PlanCreateSchema, PlanListQuery, PlanListSchema, PlanSchema

bp = flask_smorest.Blueprint("plans", __name__, url_prefix="/v1/plans",
                             description="Year of Care care and support plans")


def plan_json(plan: Plan) -> dict:
    c = plan.content
    return {
        "id": plan.id, "version": plan.version, "status": plan.status, "nhs_number": plan.nhs_number,
        "conditions": c["conditions"], "priorities": c["priorities"], "goals": c["goals"],
        "actions": c["actions"], "next_review_date": c.get("next_review_date"),
        "results": c.get("results", []), "results_shared_at": c.get("results_shared_at"),
        "care_coordinator": c.get("care_coordinator"),
        "agreed_by": plan.agreed_by, "person_agreed": plan.person_agreed,
        "agreed_at": iso(plan.agreed_at) if plan.agreed_at else None,
        "created_at": iso(plan.created_at), "updated_at": iso(plan.updated_at),
    }


def _event_data(plan: Plan) -> dict:
    body = plan_json(plan)
    caller = service_caller()
    return {
        "plan_id": plan.id, "status": plan.status, "conditions": body["conditions"],
        "priorities": body["priorities"], "goals": body["goals"], "actions": body["actions"],
        "next_review_date": body["next_review_date"], "care_coordinator": body["care_coordinator"],
        "agreed_by": plan.agreed_by, "person_agreed": plan.person_agreed, "agreed_at": body["agreed_at"],
        "changed_by": {"client": caller.client_id, "org": caller.org, "role": caller.role},
    }


def _emit(session, plan: Plan, type_: str) -> None:
    emit(session, outbox, service="plans", type=type_, subject=plan.nhs_number, aggregate_id=plan.id,
         aggregate_version=plan.version, data=_event_data(plan), traceparent=traceparent())


def _items(items: list[dict]) -> list[dict]:
    out = []
    for item in items:
        item = {k: (v.isoformat() if hasattr(v, "isoformat") else v) for k, v in item.items()}
        item["id"] = str(item.get("id") or uuid.uuid4())
        if "priority_ids" in item:
            item["priority_ids"] = [str(p) for p in item["priority_ids"]]
        if isinstance(item.get("target"), dict):
            item["target"] = {k: (v.isoformat() if hasattr(v, "isoformat") else v)
                              for k, v in item["target"].items()}
        out.append(item)
    return out


def _load(session, plan_id: str, for_update: bool = False) -> Plan:
    try:
        uuid.UUID(plan_id)
    except ValueError:
        raise Problem(404, "Not Found", "No such plan.")
    stmt = select(Plan).where(Plan.id == plan_id)
    if for_update:
        stmt = stmt.with_for_update()
    plan = session.execute(stmt).scalar_one_or_none()
    if plan is None:
        raise Problem(404, "Not Found", "No such plan.")
    return plan


@bp.route("", methods=["POST"])
@requires("plans:write")
@bp.arguments(PlanCreateSchema)
@bp.response(201, PlanSchema)
def create_plan(body):
    db = ctx().db
    try:
        with db.session() as session:
            stored = idempotency.replay(session, idempotency_keys)
            if stored is not None:
                return stored
            at = now()
            caller = service_caller()
            plan = Plan(
                id=str(uuid.uuid4()), nhs_number=body["nhs_number"], status="draft", version=1,
                content={
                    "conditions": body["conditions"],
                    "priorities": stamp_priorities(body["priorities"], at),
                    "goals": _items(body["goals"]), "actions": _items(body["actions"]),
                    "next_review_date": body["next_review_date"].isoformat() if body["next_review_date"] else None,
                    "results": _items(body["results"]),
                    "results_shared_at": iso(body["results_shared_at"]) if body["results_shared_at"] else None,
                    "care_coordinator": body.get("care_coordinator"),
                },
                created_by=caller.client_id, created_at=at, updated_at=at)
            session.add(plan)
            session.flush()
            _emit(session, plan, "plan.created")
            payload = plan_json(plan)
            idempotency.remember(session, idempotency_keys, payload, 201)
    except IntegrityError:
        with db.session() as session:  # lost a race on the same Idempotency-Key
            stored = idempotency.replay(session, idempotency_keys)
        if stored is None:
            raise
        return stored
    return with_etag(payload, 201, {"Location": f"/v1/plans/{plan.id}"})


@bp.route("", methods=["GET"])
@requires("plans:read")
@bp.arguments(PlanListQuery, location="query")
@bp.response(200, PlanListSchema)
def list_plans(query):
    with ctx().db.session() as session:
        plans = session.execute(select(Plan).where(Plan.nhs_number == query["nhs_number"])
                                .order_by(Plan.created_at)).scalars().all()
        return {"items": [plan_json(p) for p in plans], "next_cursor": None}


@bp.route("/<plan_id>", methods=["GET"])
@requires("plans:read")
@bp.response(200, PlanSchema)
def get_plan(plan_id):
    with ctx().db.session() as session:
        return with_etag(plan_json(_load(session, plan_id)))


@bp.route("/<plan_id>/agree", methods=["POST"])
@requires("plans:write")
@bp.arguments(AgreeSchema)
@bp.response(200, PlanSchema)
def agree_plan(body, plan_id):
    with ctx().db.session() as session:
        plan = _load(session, plan_id, for_update=True)
        check_if_match(plan.version)
        if not plan.content["priorities"]:
            raise Problem(409, "Conflict", "A plan can only be agreed once it records at least one "
                          "thing that matters to the person (priorities is empty).")
        try:
            plan.transition("agree")
        except IllegalTransition as exc:
            raise Problem(409, "Conflict", str(exc))
        plan.agreed_by = body["agreed_by"]
        plan.person_agreed = body["person_agreed"]
        plan.agreed_at = plan.updated_at = now()
        plan.version += 1
        session.flush()
        _emit(session, plan, "plan.agreed")
        return with_etag(plan_json(plan))
