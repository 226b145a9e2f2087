"""The commands on plans: each runs in the caller's transaction and returns the plan and the event
it wrote (None when nothing changed). Called by the API and by ``coproduction seed`` alike.

Every change is the kernel's write recipe (:class:`coproduction.aggregate.Aggregate`), and each new
version is also kept as it was in ``plan_versions``.
"""
from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy.orm import Session

from coproduction.aggregate import Aggregate, changed_by
from coproduction.auth import service_caller
from coproduction.events import iso, now
from coproduction.http import Problem, flatten_errors

from .domain import EMPTY_CONTENT, MACHINE, changed_fields, check_agreeable, find, plain, plan_content
from .models import Plan, PlanVersion, outbox
from .schemas import date_errors

#: the event each state change writes
MOVES = {"hold": "plan.held", "resume": "plan.resumed", "close": "plan.closed", "revoke": "plan.closed"}


def plan_json(plan: Plan) -> dict:
    """The plan as the API shows it, its versions keep it and its events carry it."""
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


def event_data(plan: Plan, reason: str | None = None, changes: list[str] = (), body: dict | None = None) -> dict:
    """A plan event's data; ``body`` is the plan's :func:`plan_json` when the caller has it already."""
    body = body or plan_json(plan)
    data = {k: body[k] for k in (
        "status", "status_reason", "conditions", "priorities", "goals", "actions", "next_review_date",
        "results", "results_shared_at", "care_coordinator", "agreed_by", "person_agreed", "agreed_at",
        "closed_at", "created_at")}
    return dict(data, plan_id=body["id"], reason=reason, changes=list(changes), changed_by=changed_by())


class Plans(Aggregate):
    """A plan's change also records who made it and keeps the new version in ``plan_versions``."""

    def bump(self, plan: Plan, at: datetime | None = None) -> datetime:
        plan.updated_by = service_caller().client_id
        return super().bump(plan, at)

    def emit(self, session: Session, plan: Plan, type_: str, reason: str | None = None,
             changes: list[str] = ()) -> dict:
        session.flush()
        session.add(PlanVersion(plan_id=plan.id, version=plan.version, event_type=type_, status=plan.status,
                                snapshot=plan_json(plan), changes=list(changes), reason=reason,
                                changed_by=changed_by(), created_at=plan.updated_at))
        return super().emit(session, plan, type_, reason=reason, changes=changes)


PLANS = Plans("plans", Plan, "plan", MACHINE, outbox, event_data)


def create(session: Session, body: dict) -> tuple[Plan, dict]:
    """A draft plan from the sent fields."""
    at = now()
    caller = service_caller()
    plan = Plan(id=str(uuid.uuid4()), nhs_number=body["nhs_number"], status="draft", version=1,
                content=plan_content(body, EMPTY_CONTENT, at), created_by=caller.client_id,
                updated_by=caller.client_id, created_at=at, updated_at=at)
    session.add(plan)
    return plan, PLANS.emit(session, plan, "plan.created")


def _revise(session: Session, plan: Plan, updates: dict, reason: str | None,
            date_fields: dict | None = None) -> tuple[Plan, dict | None]:
    """Apply sent fields to a locked plan: a new version and plan.revised, unless nothing differs."""
    PLANS.move(plan, "revise")
    errors = date_errors(date_fields if date_fields is not None else updates, plan.created_at.date())
    if errors:
        flat = flatten_errors(errors)
        raise Problem(422, "Unprocessable Content", "Some fields are not valid: " + ", ".join(sorted(flat)),
                      errors=flat)
    at = now()
    content = plan_content(updates, plan.content, at)
    changes = changed_fields(plan.content, content)
    if not changes:
        return plan, None
    plan.content = content
    PLANS.bump(plan, at)
    return plan, PLANS.emit(session, plan, "plan.revised", reason, changes)


def revise(session: Session, plan_id: str, updates: dict, reason: str | None) -> tuple[Plan, dict | None]:
    """The fields sent replace the plan's."""
    return _revise(session, PLANS.lock(session, plan_id), updates, reason)


def _updated_item(plan: Plan, field: str, item_id: str, what: str, updates: dict) -> tuple[list[dict], int]:
    """A copy of the plan's list ``field`` with the updates applied to one item, and that item's index."""
    items = [dict(item) for item in plan.content[field]]
    i = find(items, item_id, what)
    items[i].update(plain(updates))
    return items, i


def update_goal(session: Session, plan_id: str, goal_id: str, updates: dict,
                reason: str | None) -> tuple[Plan, dict | None]:
    plan = PLANS.lock(session, plan_id)
    goals, i = _updated_item(plan, "goals", goal_id, "goal", updates)
    target_due = {"goals": [{} for _ in goals]}
    target_due["goals"][i] = {"target": updates.get("target")}
    try:
        return _revise(session, plan, {"goals": goals}, reason, date_fields=target_due)
    except Problem as exc:
        if exc.code == 422 and exc.errors:  # name the field as the goal's own route has it
            exc.errors = {k.replace(f"goals.{i}.", ""): v for k, v in exc.errors.items()}
            exc.detail = "Some fields are not valid: " + ", ".join(sorted(exc.errors))
        raise


def update_action(session: Session, plan_id: str, action_id: str, updates: dict,
                  reason: str | None) -> tuple[Plan, dict | None]:
    plan = PLANS.lock(session, plan_id)
    actions, _ = _updated_item(plan, "actions", action_id, "action", updates)
    return _revise(session, plan, {"actions": actions}, reason)


def agree(session: Session, plan_id: str, agreed_by: str, person_agreed: bool) -> tuple[Plan, dict]:
    """Agree a draft with the person: who agreed and whether the person did."""
    plan = PLANS.lock(session, plan_id)
    check_agreeable(plan.content)
    PLANS.move(plan, "agree")
    plan.agreed_by = agreed_by
    plan.person_agreed = person_agreed
    plan.agreed_at = PLANS.bump(plan)
    return plan, PLANS.emit(session, plan, "plan.agreed")


def move(session: Session, plan_id: str, action: str, reason: str | None) -> tuple[Plan, dict]:
    """Hold, resume, close or revoke a plan (closing and revoking stamp ``closed_at``)."""
    def apply(plan: Plan, at: datetime) -> None:
        content = dict(plan.content, status_reason=reason)
        if action in ("close", "revoke"):
            content["closed_at"] = iso(at)
        plan.content = content
    return PLANS.change(session, plan_id, action, MOVES[action], apply, reason=reason, changes=["status"])
