"""HTTP routes of the plans service.

Every write: load the plan FOR UPDATE, check If-Match, apply the rule, ``version += 1``, keep a
snapshot of the new version in ``plan_versions`` and emit the event, all in one transaction.
"""
from __future__ import annotations

import json
import uuid
from datetime import date, datetime

import flask_smorest
from flask import Response
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from coproduction import idempotency
from coproduction.auth import requires, service_caller
from coproduction.events import iso, now, stamp_priorities
from coproduction.http import Problem, check_if_match, ctx, flatten_errors, load_or_404, traceparent, with_etag
from coproduction.outbox import emit
from coproduction.paging import keyset_page

from interop import fhir_plans as fhir
from .models import IllegalTransition, Plan, PlanVersion, goal_transition_problem, idempotency_keys, outbox
from .schemas import (ActionPatchSchema, AgreeSchema, GoalPatchSchema, PlanCreateSchema, PlanListQuery,
                      PlanListSchema, PlanPatchSchema, PlanSchema, ReasonSchema, RequiredReasonSchema,
                      VersionListSchema, date_errors)

bp = flask_smorest.Blueprint("plans", __name__, url_prefix="/v1/plans",
                             description="Year of Care care and support plans")

FHIR_JSON = "application/fhir+json"
#: the fields of a plan's content, in the order a revision reports them
CONTENT_FIELDS = ("conditions", "priorities", "goals", "actions", "next_review_date", "results",
                  "results_shared_at", "care_coordinator")


# -- representations ---------------------------------------------------------------------------
def plan_json(plan: Plan) -> dict:
    c = plan.content
    return {
        "id": plan.id, "version": plan.version, "status": plan.status,
        "status_reason": c.get("status_reason"), "nhs_number": plan.nhs_number,
        "conditions": c["conditions"], "priorities": c["priorities"], "goals": c["goals"],
        "actions": c["actions"], "next_review_date": c.get("next_review_date"),
        "results": c.get("results", []), "results_shared_at": c.get("results_shared_at"),
        "care_coordinator": c.get("care_coordinator"),
        "agreed_by": plan.agreed_by, "person_agreed": plan.person_agreed,
        "agreed_at": iso(plan.agreed_at) if plan.agreed_at else None,
        "closed_at": c.get("closed_at"),
        "created_by": plan.created_by, "updated_by": plan.updated_by or plan.created_by,
        "created_at": iso(plan.created_at), "updated_at": iso(plan.updated_at),
    }


def _changed_by() -> dict:
    caller = service_caller()
    return {"client": caller.client_id, "org": caller.org, "role": caller.role}


def _event_data(body: dict, reason: str | None, changes: list[str]) -> dict:
    data = {k: body[k] for k in (
        "status", "status_reason", "conditions", "priorities", "goals", "actions", "next_review_date",
        "results", "results_shared_at", "care_coordinator", "agreed_by", "person_agreed", "agreed_at",
        "closed_at", "created_at")}
    return dict(data, plan_id=body["id"], reason=reason, changes=changes, changed_by=_changed_by())


def _record(session, plan: Plan, type_: str, reason: str | None = None, changes: list[str] = ()) -> dict:
    """Snapshot the plan's new version and emit its event, in the caller's transaction."""
    session.flush()
    body = plan_json(plan)
    changes = list(changes)
    session.add(PlanVersion(plan_id=plan.id, version=plan.version, event_type=type_, status=plan.status,
                            snapshot=body, changes=changes, reason=reason, changed_by=_changed_by(),
                            created_at=plan.updated_at))
    emit(session, outbox, service="plans", type=type_, subject=plan.nhs_number, aggregate_id=plan.id,
         aggregate_version=plan.version, data=_event_data(body, reason, changes), traceparent=traceparent())
    return body


# -- normalising what was sent into what is stored ----------------------------------------------
def _plain(value):
    if isinstance(value, (date, datetime)):
        return value.isoformat()
    if isinstance(value, uuid.UUID):
        return str(value)
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value


def _with_ids(items: list[dict], field: str) -> list[dict]:
    out, seen, errors = [], set(), {}
    for i, item in enumerate(items):
        item = _plain(item)
        item["id"] = item.get("id") or str(uuid.uuid4())
        if item["id"] in seen:
            errors[f"{field}.{i}.id"] = ["The same id appears twice in this list."]
        seen.add(item["id"])
        out.append(item)
    if errors:
        raise Problem(422, "Unprocessable Content", "Some fields are not valid: " + ", ".join(errors),
                      errors=errors)
    return out


def _goals(goals: list[dict], previous: list[dict], today: str) -> list[dict]:
    """Stamp status_date and achieved_on; refuse lifecycle changes FHIR's Goal does not allow (409)."""
    before = {g["id"]: g for g in previous}
    out, problems = [], []
    for g in _with_ids(goals, "goals"):
        old = before.get(g["id"])
        if old is not None:
            problem = goal_transition_problem(g["id"], old["lifecycle_status"], g["lifecycle_status"])
            if problem:
                problems.append(problem)
        moved = old is None or (old["lifecycle_status"], old["achievement_status"]) != (
            g["lifecycle_status"], g["achievement_status"])
        g["status_date"] = today if moved else old.get("status_date")
        achieved = g["achievement_status"] in ("achieved", "sustaining")
        g["achieved_on"] = ((old.get("achieved_on") if old is not None and old.get("achieved_on") else today)
                            if achieved else None)
        out.append(g)
    if problems:
        raise Problem(409, "Conflict", " ".join(problems))
    return out


def _actions(actions: list[dict], previous: list[dict], today: str) -> list[dict]:
    before = {a["id"]: a for a in previous}
    out = []
    for a in _with_ids(actions, "actions"):
        old = before.get(a["id"])
        if a["status"] == "done":
            a["completed_on"] = old["completed_on"] if old is not None and old.get("completed_on") else today
        else:
            a["completed_on"] = None
        out.append(a)
    return out


def _priorities(priorities: list[dict], previous: list[dict], at: datetime) -> list[dict]:
    """Stamp ids and recorded times; a priority kept by id keeps its first recorded time."""
    recorded = {p["id"]: p.get("recorded_at") for p in previous}
    stamped = stamp_priorities(priorities, at)
    for sent, p in zip(priorities, stamped):
        if sent.get("recorded_at") is None and recorded.get(p["id"]):
            p["recorded_at"] = recorded[p["id"]]
    ids = [p["id"] for p in stamped]
    dupes = {i for i in ids if ids.count(i) > 1}
    if dupes:
        raise Problem(422, "Unprocessable Content", "The same priority id appears twice.",
                      errors={f"priorities.{ids.index(d)}.id": ["The same id appears twice in this list."]
                              for d in dupes})
    return stamped


def _check_goal_priorities(content: dict) -> None:
    known = {p["id"] for p in content["priorities"]}
    errors = {}
    for i, g in enumerate(content["goals"]):
        missing = [p for p in g.get("priority_ids", []) if p not in known]
        if missing:
            errors[f"goals.{i}.priority_ids"] = [
                f"Not a priority of this plan: {', '.join(missing)}."]
    if errors:
        raise Problem(422, "Unprocessable Content", "Some fields are not valid: " + ", ".join(errors),
                      errors=errors)


def _content(body: dict, previous: dict, at: datetime) -> dict:
    """The plan's new content from the sent fields (all of them on create, some on revise)."""
    today = at.date().isoformat()
    content = dict(previous)
    if "conditions" in body:
        content["conditions"] = list(body["conditions"])
    if "priorities" in body:
        content["priorities"] = _priorities(body["priorities"], previous.get("priorities", []), at)
    if "goals" in body:
        content["goals"] = _goals(body["goals"], previous.get("goals", []), today)
    if "actions" in body:
        content["actions"] = _actions(body["actions"], previous.get("actions", []), today)
    if "results" in body:
        content["results"] = _with_ids(body["results"], "results")
    if "next_review_date" in body:
        content["next_review_date"] = _plain(body["next_review_date"])
    if "results_shared_at" in body:
        content["results_shared_at"] = iso(body["results_shared_at"]) if body["results_shared_at"] else None
    if "care_coordinator" in body:
        content["care_coordinator"] = body["care_coordinator"]
    _check_goal_priorities(content)
    return content


def _load(session, plan_id: str, for_update: bool = False) -> Plan:
    return load_or_404(session, Plan, plan_id, "plan", for_update)


def _transition(plan: Plan, action: str) -> None:
    try:
        plan.transition(action)
    except IllegalTransition as exc:
        raise Problem(409, "Conflict", str(exc))


def _touch(plan: Plan, at: datetime | None = None) -> None:
    plan.version += 1
    plan.updated_at = at or now()
    plan.updated_by = service_caller().client_id


# -- create, read, list -------------------------------------------------------------------------
@bp.route("", methods=["POST"])
@requires("plans:write")
@bp.arguments(PlanCreateSchema)
@bp.response(201, PlanSchema)
def create_plan(body):
    """Create a draft plan. A retried POST with the same ``Idempotency-Key`` returns the first result."""
    db = ctx().db
    try:
        with db.session() as session:
            stored = idempotency.replay(session, idempotency_keys)
            if stored is not None:
                return stored
            at = now()
            caller = service_caller()
            empty = {"conditions": [], "priorities": [], "goals": [], "actions": [], "results": [],
                     "next_review_date": None, "results_shared_at": None, "care_coordinator": None,
                     "status_reason": None, "closed_at": None}
            plan = Plan(id=str(uuid.uuid4()), nhs_number=body["nhs_number"], status="draft", version=1,
                        content=_content(body, empty, at), created_by=caller.client_id,
                        updated_by=caller.client_id, created_at=at, updated_at=at)
            session.add(plan)
            payload = _record(session, plan, "plan.created")
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
        return with_etag(plan_json(_load(session, plan_id)))


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
        return _fhir_response(plan_json(_load(session, plan_id)))


# -- versions ----------------------------------------------------------------------------------
MAX_VERSION = 2**31 - 1  # PlanVersion.version is a 32-bit integer

def _version(session, plan_id: str, version: int) -> PlanVersion:
    _load(session, plan_id)
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
        plan = _load(session, plan_id)
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
def _revise(session, plan: Plan, updates: dict, reason: str | None, date_fields: dict | None = None) -> Response:
    """Apply sent fields to a locked plan whose If-Match was checked: a new version, plan.revised."""
    _transition(plan, "revise")
    errors = date_errors(date_fields if date_fields is not None else updates, plan.created_at.date())
    if errors:
        flat = flatten_errors(errors)
        raise Problem(422, "Unprocessable Content", "Some fields are not valid: " + ", ".join(sorted(flat)),
                      errors=flat)
    at = now()
    content = _content(updates, plan.content, at)
    changes = [f for f in CONTENT_FIELDS if content.get(f) != plan.content.get(f)]
    if not changes:  # nothing differs: no new version, no event
        return with_etag(plan_json(plan))
    plan.content = content
    _touch(plan, at)
    return with_etag(_record(session, plan, "plan.revised", reason, changes))


@bp.route("/<plan_id>", methods=["PATCH"])
@requires("plans:write")
@bp.arguments(PlanPatchSchema)
@bp.response(200, PlanSchema)
def revise_plan(body, plan_id):
    """Revise a plan (``If-Match`` required): the fields sent replace the plan's; a new version."""
    reason = body.pop("reason", None)
    with ctx().db.session() as session:
        plan = _load(session, plan_id, for_update=True)
        check_if_match(plan.version)
        return _revise(session, plan, body, reason)


def _find(items: list[dict], item_id: str, what: str) -> int:
    for i, item in enumerate(items):
        if item["id"] == item_id:
            return i
    raise Problem(404, "Not Found", f"This plan has no {what} {item_id}.")


@bp.route("/<plan_id>/goals/<goal_id>", methods=["PATCH"])
@requires("plans:write")
@bp.arguments(GoalPatchSchema)
@bp.response(200, PlanSchema)
def update_goal(body, plan_id, goal_id):
    """Change one goal (its statuses, target, description); ``If-Match`` is the plan's version."""
    reason = body.pop("reason", None)
    with ctx().db.session() as session:
        plan = _load(session, plan_id, for_update=True)
        check_if_match(plan.version)
        goals = [dict(g) for g in plan.content["goals"]]
        i = _find(goals, goal_id, "goal")
        goals[i].update(_plain(body))
        target_due = {"goals": [{} for _ in goals]}
        target_due["goals"][i] = {"target": body.get("target")}
        try:
            return _revise(session, plan, {"goals": goals}, reason, date_fields=target_due)
        except Problem as exc:
            if exc.code == 422 and exc.errors:  # name the field as this route has it
                exc.errors = {k.replace(f"goals.{i}.", ""): v for k, v in exc.errors.items()}
                exc.detail = "Some fields are not valid: " + ", ".join(sorted(exc.errors))
            raise


@bp.route("/<plan_id>/actions/<action_id>", methods=["PATCH"])
@requires("plans:write")
@bp.arguments(ActionPatchSchema)
@bp.response(200, PlanSchema)
def update_action(body, plan_id, action_id):
    """Change one action (e.g. mark it done); ``If-Match`` is the plan's version."""
    reason = body.pop("reason", None)
    with ctx().db.session() as session:
        plan = _load(session, plan_id, for_update=True)
        check_if_match(plan.version)
        actions = [dict(a) for a in plan.content["actions"]]
        i = _find(actions, action_id, "action")
        actions[i].update(_plain(body))
        return _revise(session, plan, {"actions": actions}, reason)


# -- state transitions -------------------------------------------------------------------------
@bp.route("/<plan_id>/agree", methods=["POST"])
@requires("plans:write")
@bp.arguments(AgreeSchema)
@bp.response(200, PlanSchema)
def agree_plan(body, plan_id):
    """Agree a draft with the person: records who agreed and whether the person did."""
    with ctx().db.session() as session:
        plan = _load(session, plan_id, for_update=True)
        check_if_match(plan.version)
        if not plan.content["priorities"]:
            raise Problem(409, "Conflict", "A plan can only be agreed once it records at least one "
                          "thing that matters to the person (priorities is empty).")
        _transition(plan, "agree")
        plan.agreed_by = body["agreed_by"]
        plan.person_agreed = body["person_agreed"]
        _touch(plan)
        plan.agreed_at = plan.updated_at
        return with_etag(_record(session, plan, "plan.agreed"))


def _move(plan_id: str, action: str, type_: str, reason: str | None, closing: bool = False) -> Response:
    with ctx().db.session() as session:
        plan = _load(session, plan_id, for_update=True)
        check_if_match(plan.version)
        _transition(plan, action)
        _touch(plan)
        content = dict(plan.content, status_reason=reason)
        if closing:
            content["closed_at"] = iso(plan.updated_at)
        plan.content = content
        return with_etag(_record(session, plan, type_, reason, ["status"]))


@bp.route("/<plan_id>/hold", methods=["POST"])
@requires("plans:write")
@bp.arguments(RequiredReasonSchema)
@bp.response(200, PlanSchema)
def hold_plan(body, plan_id):
    """Put an active plan on hold (e.g. a hospital admission); the reason is required."""
    return _move(plan_id, "hold", "plan.held", body["reason"])


@bp.route("/<plan_id>/resume", methods=["POST"])
@requires("plans:write")
@bp.arguments(ReasonSchema)
@bp.response(200, PlanSchema)
def resume_plan(body, plan_id):
    return _move(plan_id, "resume", "plan.resumed", body.get("reason"))


@bp.route("/<plan_id>/close", methods=["POST"])
@requires("plans:write")
@bp.arguments(ReasonSchema)
@bp.response(200, PlanSchema)
def close_plan(body, plan_id):
    """Close an active or on-hold plan as completed (plan.closed, status completed)."""
    return _move(plan_id, "close", "plan.closed", body.get("reason"), closing=True)


@bp.route("/<plan_id>/revoke", methods=["POST"])
@requires("plans:write")
@bp.arguments(RequiredReasonSchema)
@bp.response(200, PlanSchema)
def revoke_plan(body, plan_id):
    """End a plan before completion, e.g. made in error (plan.closed, status revoked)."""
    return _move(plan_id, "revoke", "plan.closed", body["reason"], closing=True)
