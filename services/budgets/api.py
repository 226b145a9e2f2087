"""HTTP routes of the budgets service: each reads the request, runs one command of ``handlers``
in a transaction and answers with the budget and its ETag."""
from __future__ import annotations

import json

import flask_smorest
from sqlalchemy import select

from coproduction.auth import requires
from coproduction.http import ctx, with_etag
from coproduction.idempotency import create_once
from coproduction.paging import keyset_page

from . import domain, handlers
from .handlers import BUDGETS, budget_json
from .models import Budget, idempotency_keys, outbox
from .schemas import (ActivateSchema, AgreeSchema, BudgetCreateSchema, BudgetListQuery, BudgetListSchema,
                      BudgetPatchSchema, BudgetSchema, ChangeHistorySchema, ChangeQuery, EndSchema,
                      LineItemCreateSchema, LineItemListSchema, LineItemPatchSchema, ResumeSchema, ReviewSchema,
                      StartPlanningSchema, SuspendSchema)

bp = flask_smorest.Blueprint("budgets", __name__, url_prefix="/v1/budgets",
                             description="Personal health budgets (and Care Act personal budgets)")


def _write(command, *args):
    with ctx().db.session() as session:
        budget = command(session, *args)[0]
        return with_etag(budget_json(budget))


# -- budgets -------------------------------------------------------------------------------
@bp.route("", methods=["POST"])
@requires("budgets:write")
@bp.arguments(BudgetCreateSchema)
@bp.response(201, BudgetSchema)
def create_budget(body):
    def create(session):
        budget, _event = handlers.create(session, body)
        return budget_json(budget), f"/v1/budgets/{budget.id}"
    return create_once(idempotency_keys, create)


@bp.route("", methods=["GET"])
@requires("budgets:read")
@bp.arguments(BudgetListQuery, location="query")
@bp.response(200, BudgetListSchema)
def list_budgets(query):
    stmt = select(Budget).where(Budget.nhs_number == query["nhs_number"])
    if query["plan_id"]:
        stmt = stmt.where(Budget.plan_id == str(query["plan_id"]))
    if query["status"]:
        stmt = stmt.where(Budget.status == query["status"])
    with ctx().db.session() as session:
        rows, next_cursor = keyset_page(session, stmt, Budget, query["limit"], query["cursor"])
        return {"items": [budget_json(b) for b in rows], "next_cursor": next_cursor}


@bp.route("/<budget_id>", methods=["GET"])
@requires("budgets:read")
@bp.response(200, BudgetSchema)
def get_budget(budget_id):
    with ctx().db.session() as session:
        return with_etag(budget_json(BUDGETS.load(session, budget_id)))


@bp.route("/<budget_id>", methods=["PATCH"])
@requires("budgets:write")
@bp.arguments(BudgetPatchSchema)
@bp.response(200, BudgetSchema)
def patch_budget(body, budget_id):
    change = body.pop("change")
    return _write(handlers.change, budget_id, body, change)


# -- life cycle ----------------------------------------------------------------------------
@bp.route("/<budget_id>/start-planning", methods=["POST"])
@requires("budgets:write")
@bp.arguments(StartPlanningSchema)
@bp.response(200, BudgetSchema)
def start_planning(body, budget_id):
    """requested → planning: support planning with the person begins."""
    return _write(handlers.start_planning, budget_id, body)


@bp.route("/<budget_id>/agree", methods=["POST"])
@requires("budgets:write")
@bp.arguments(AgreeSchema)
@bp.response(200, BudgetSchema)
def agree_budget(body, budget_id):
    """planning → agreed: the person and the professional agree how the money meets their priorities."""
    return _write(handlers.agree, budget_id, body)


@bp.route("/<budget_id>/activate", methods=["POST"])
@requires("budgets:write")
@bp.arguments(ActivateSchema)
@bp.response(200, BudgetSchema)
def activate_budget(body, budget_id):
    """agreed → active: the money starts to flow."""
    return _write(handlers.activate, budget_id, body)


@bp.route("/<budget_id>/review", methods=["POST"])
@requires("budgets:write")
@bp.arguments(ReviewSchema)
@bp.response(200, BudgetSchema)
def review_budget(body, budget_id):
    """``action: start`` (active → under_review) or ``action: complete`` (under_review → active)."""
    command = handlers.start_review if body["action"] == "start" else handlers.complete_review
    return _write(command, budget_id, body)


@bp.route("/<budget_id>/suspend", methods=["POST"])
@requires("budgets:write")
@bp.arguments(SuspendSchema)
@bp.response(200, BudgetSchema)
def suspend_budget(body, budget_id):
    """active or under_review → suspended, with the reason and from when (and until when, if known)."""
    return _write(handlers.suspend, budget_id, body)


@bp.route("/<budget_id>/resume", methods=["POST"])
@requires("budgets:write")
@bp.arguments(ResumeSchema)
@bp.response(200, BudgetSchema)
def resume_budget(body, budget_id):
    """suspended → active."""
    return _write(handlers.resume, budget_id, body)


@bp.route("/<budget_id>/end", methods=["POST"])
@requires("budgets:write")
@bp.arguments(EndSchema)
@bp.response(200, BudgetSchema)
def end_budget(body, budget_id):
    """Any state but ended → ended (final), with the reason and the date it ends."""
    return _write(handlers.end, budget_id, body)


# -- line items ----------------------------------------------------------------------------
@bp.route("/<budget_id>/line-items", methods=["GET"])
@requires("budgets:read")
@bp.response(200, LineItemListSchema)
def list_line_items(budget_id):
    with ctx().db.session() as session:
        budget = BUDGETS.load(session, budget_id)
        return with_etag({"budget_id": budget.id, "nhs_number": budget.nhs_number, "version": budget.version,
                          "items": budget.content["line_items"]})


@bp.route("/<budget_id>/line-items", methods=["POST"])
@requires("budgets:write")
@bp.arguments(LineItemCreateSchema)
@bp.response(201, BudgetSchema)
def add_line_item(body, budget_id):
    change = body.pop("change")

    def add(session):
        budget, item, _event = handlers.add_line_item(session, budget_id, body, change)
        return budget_json(budget), f"/v1/budgets/{budget.id}/line-items/{item['id']}"
    return create_once(idempotency_keys, add)


@bp.route("/<budget_id>/line-items/<item_id>", methods=["GET"])
@requires("budgets:read")
def get_line_item(budget_id, item_id):
    with ctx().db.session() as session:
        budget = BUDGETS.load(session, budget_id)
        item = budget.content["line_items"][domain.find_item(budget.content, item_id)]
        return with_etag(dict(item, budget_id=budget.id, nhs_number=budget.nhs_number, version=budget.version))


@bp.route("/<budget_id>/line-items/<item_id>", methods=["PATCH"])
@requires("budgets:write")
@bp.arguments(LineItemPatchSchema)
@bp.response(200, BudgetSchema)
def patch_line_item(body, budget_id, item_id):
    change = body.pop("change")
    return _write(handlers.change_line_item, budget_id, item_id, body, change)


@bp.route("/<budget_id>/line-items/<item_id>", methods=["DELETE"])
@requires("budgets:write")
@bp.arguments(ChangeQuery, location="query")
@bp.response(200, BudgetSchema)
def delete_line_item(change, budget_id, item_id):
    """Remove a line item; the reason and dates of the change go in the query (?reason=…)."""
    return _write(handlers.remove_line_item, budget_id, item_id, change)


# -- history -------------------------------------------------------------------------------
@bp.route("/<budget_id>/changes", methods=["GET"])
@requires("budgets:read")
@bp.response(200, ChangeHistorySchema)
def budget_changes(budget_id):
    """Every event of this budget, oldest first: what changed, why, from when, and who changed it."""
    with ctx().db.session() as session:
        budget = BUDGETS.load(session, budget_id)
        rows = session.execute(select(outbox.c.body).where(outbox.c.aggregate_id == budget.id)
                               .order_by(outbox.c.id)).scalars().all()
    items = []
    for body in rows:
        event = json.loads(body)
        items.append({"version": event["aggregateversion"], "type": event["type"], "time": event["time"],
                      "event_id": event["id"], "status": event["data"]["status"],
                      "change": event["data"]["change"], "changed_by": event["data"]["changed_by"]})
    return {"budget_id": budget.id, "nhs_number": budget.nhs_number, "items": items}
